"""One versioned Arrow schema per Parquet table, a validating reader and an atomic writer.

Every table a stage publishes is declared here, so ``docs/architecture.md`` and the code agree on
columns. Files carry their table name and schema version in the Parquet metadata; the reader
refuses a file of another table or a newer version, names missing columns, and casts compatible
types, so a stage fails at its input with the file's name instead of deep inside a computation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mentalchat.errors import MentalchatError
from mentalchat.io import atomic_path

__all__ = [
    "TABLES",
    "SchemaError",
    "TableSpec",
    "get_table",
    "read_table",
    "register_table",
    "write_table",
]

META_TABLE = b"mentalchat.table"
META_VERSION = b"mentalchat.schema_version"


class SchemaError(MentalchatError, ValueError):
    """A Parquet file that does not match its table's schema; the message names the file."""


@dataclass(frozen=True)
class TableSpec:
    """A named, versioned table: its Arrow schema and what it is for."""

    name: str
    version: int
    schema: pa.Schema
    description: str

    @property
    def metadata(self) -> dict[bytes, bytes]:
        return {META_TABLE: self.name.encode(), META_VERSION: str(self.version).encode()}

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def empty(self) -> pa.Table:
        return self.schema.with_metadata(self.metadata).empty_table()

    def from_rows(self, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
        """Build a table from dicts; missing nullable columns become null, extra keys are errors."""
        rows = list(rows)
        extra = {k for r in rows for k in r} - set(self.columns)
        if extra:
            raise SchemaError(f"table {self.name}: unknown columns {sorted(extra)}")
        data = {name: [r.get(name) for r in rows] for name in self.columns}
        try:
            table = pa.table(data, schema=self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SchemaError(f"table {self.name}: {exc}") from exc
        return self.validate(table, source=f"<rows for {self.name}>")

    def validate(self, table: pa.Table, *, source: str) -> pa.Table:
        """Check names, types and nullability; return the table cast to the schema with metadata."""
        meta = table.schema.metadata or {}
        name = meta.get(META_TABLE)
        if name is not None and name.decode() != self.name:
            raise SchemaError(f"{source}: is a {name.decode()!r} table, expected {self.name!r}")
        version = meta.get(META_VERSION)
        if version is not None and int(version) > self.version:
            raise SchemaError(
                f"{source}: {self.name} schema version {int(version)} is newer than this "
                f"mentalchat's ({self.version}); upgrade mentalchat"
            )
        # Adding a nullable column is a compatible change: older files read with nulls there.
        missing = [f.name for f in self.schema if f.name not in table.column_names and not f.nullable]
        if missing:
            raise SchemaError(f"{source}: {self.name} table lacks columns {missing}")
        columns = []
        for field in self.schema:
            if field.name not in table.column_names:
                columns.append(pa.nulls(table.num_rows, field.type))
                continue
            col = table.column(field.name)
            if not col.type.equals(field.type):
                try:
                    col = col.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise SchemaError(
                        f"{source}: column {field.name!r} has type {col.type}, expected {field.type}"
                    ) from exc
            if not field.nullable and col.null_count:
                raise SchemaError(f"{source}: column {field.name!r} has {col.null_count} nulls")
            columns.append(col)
        return pa.Table.from_arrays(columns, schema=self.schema.with_metadata(self.metadata))


TABLES: dict[str, TableSpec] = {}


def register_table(spec: TableSpec) -> TableSpec:
    if spec.name in TABLES and TABLES[spec.name] != spec:
        raise ValueError(f"table {spec.name!r} registered twice with different schemas")
    TABLES[spec.name] = spec
    return spec


def get_table(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {sorted(TABLES)}") from None


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_")))
        if not files:
            raise SchemaError(f"{path}: folder holds no .parquet files")
        return files
    if not path.exists():
        raise SchemaError(f"{path}: no such file")
    return [path]


def read_table(path: str | Path, table: str | TableSpec) -> pa.Table:
    """Read a Parquet file or folder of files and validate it as ``table``."""
    spec = get_table(table) if isinstance(table, str) else table
    parts = []
    for file in _files(Path(path)):
        try:
            t = pq.read_table(file)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SchemaError(f"{file}: not a readable Parquet file: {exc}") from exc
        parts.append(spec.validate(t, source=str(file)))
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def write_table(table: pa.Table, path: str | Path, spec: str | TableSpec) -> Path:
    """Validate and write one Parquet file atomically (temp file + rename)."""
    spec = get_table(spec) if isinstance(spec, str) else spec
    table = spec.validate(table, source=f"<{spec.name} to {path}>")
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def _schema(*fields: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(n, t, nullable=nl) for n, t, nl in fields])


# ---------------------------------------------------------------------------------------------
# Stage 1: dataset (mentalchat.dataset)
# ---------------------------------------------------------------------------------------------
PAGES = register_table(
    TableSpec(
        name="pages",
        version=1,
        description=(
            "One row per transcript page that reached the paraphraser: provenance and de-identification "
            "counts, never raw text (the de-identified text only with interview.keep_page_text)."
        ),
        schema=_schema(
            ("transcript_id", pa.string(), False),  # "t-" + hash of the file's relative path (names stay out)
            ("page", pa.int32(), False),  # 1-based
            ("n_words", pa.int32(), False),  # words on the raw page
            ("deid_counts", pa.string(), False),  # JSON {entity_type: count} replaced before the model
            ("text_deid", pa.string(), True),  # de-identified page, null unless keep_page_text
            ("status", pa.string(), False),  # qa | rejected
        ),
    )
)

QA_PAIRS = register_table(
    TableSpec(
        name="qa_pairs",
        version=1,
        description="The dataset in the MentalChat16K schema (instruction, input, output) plus provenance.",
        schema=_schema(
            ("id", pa.string(), False),  # content hash of (input, output)
            ("instruction", pa.string(), False),
            ("input", pa.string(), False),
            ("output", pa.string(), False),
            ("source", pa.string(), False),  # interview | synthetic
            ("topic", pa.string(), True),
            ("page_ref", pa.string(), True),  # "<transcript_id>:<page>" for interview pairs
            ("generator_model", pa.string(), False),
            ("prompt_version", pa.string(), False),
            ("crisis_flag", pa.bool_(), False),
            ("crisis_categories", pa.string(), True),  # comma-joined categories when flagged
            ("crisis_escalated", pa.bool_(), True),  # null when crisis_flag is false
        ),
    )
)

REJECTS = register_table(
    TableSpec(
        name="rejects",
        version=1,
        description="Items dropped by a filter, with the reason (de-identified text only).",
        schema=_schema(
            ("id", pa.string(), False),
            ("source", pa.string(), False),
            ("filter", pa.string(), False),  # engine_error | unparseable | truncated | too_short | refusal | near_duplicate | missing | duplicate
            ("reason", pa.string(), False),
            ("topic", pa.string(), True),
            ("page_ref", pa.string(), True),
            ("input", pa.string(), True),
            ("output", pa.string(), True),
        ),
    )
)

DIALOGUES = register_table(
    TableSpec(
        name="dialogues",
        version=1,
        description=(
            "Multi-turn counselling conversations (client/counsellor turns, de-identified with the same "
            "placeholders in every turn) in the chat 'messages' format HF datasets loads, plus provenance."
        ),
        schema=_schema(
            ("id", pa.string(), False),  # content hash of the messages
            ("instruction", pa.string(), False),  # the system turn used in training and answering
            (
                "messages",
                pa.list_(pa.struct([pa.field("role", pa.string(), nullable=False),
                                    pa.field("content", pa.string(), nullable=False)])),
                False,
            ),  # user/assistant alternating, first user, last assistant
            ("n_turns", pa.int32(), False),  # client turns (= counsellor turns)
            ("source", pa.string(), False),  # interview | synthetic
            ("topic", pa.string(), True),
            ("page_ref", pa.string(), True),  # "<transcript_id>:<first page>-<last page>" for interview dialogues
            ("split", pa.string(), False),  # train | benchmark (held out of training, becomes questions)
            ("generator_model", pa.string(), False),
            ("prompt_version", pa.string(), False),
            ("crisis_flag", pa.bool_(), False),  # any client turn flagged
            ("crisis_turns", pa.string(), True),  # comma-joined 1-based client turns flagged
            ("crisis_categories", pa.string(), True),  # comma-joined categories when flagged
            ("crisis_escalated", pa.bool_(), True),  # a counsellor turn at or after the first flagged one escalates; null when not flagged
        ),
    )
)

# ---------------------------------------------------------------------------------------------
# Stage 3: answers (mentalchat.generate)
# ---------------------------------------------------------------------------------------------
ANSWERS = register_table(
    TableSpec(
        name="answers",
        version=2,
        description=(
            "One answer per (question, model) from a base model or an adapter; a multi-turn question has "
            "one row per turn, each answered with the model's own earlier answers in context."
        ),
        schema=_schema(
            ("question_id", pa.string(), False),
            ("model_id", pa.string(), False),
            ("base_model", pa.string(), True),
            ("data_config", pa.string(), True),  # base | synthetic | interview | combined | baseline
            ("answer", pa.string(), False),
            ("tokens_in", pa.int64(), True),
            ("tokens_out", pa.int64(), True),
            ("finish_reason", pa.string(), True),
            ("engine", pa.string(), True),
            ("params", pa.string(), True),  # JSON sampling parameters
            ("prompt_format", pa.string(), True),
            ("turn", pa.int32(), True),  # 1-based turn of a multi-turn question; null for a single-turn one
        ),
    )
)

# ---------------------------------------------------------------------------------------------
# Stage 4: judgments (mentalchat.judge)
# ---------------------------------------------------------------------------------------------
JUDGMENTS = register_table(
    TableSpec(
        name="judgments",
        version=2,
        description=(
            "One row per (question, model, judge, metric[, turn]); human ratings use judge 'human:<rater>'. "
            "Multi-turn questions: turn 1..n grades that turn on the 7 metrics, turn 0 the whole conversation."
        ),
        schema=_schema(
            ("question_id", pa.string(), False),
            ("model", pa.string(), False),
            ("base_model", pa.string(), True),
            ("data_config", pa.string(), True),
            ("judge", pa.string(), False),
            ("metric", pa.string(), False),
            ("score", pa.float64(), True),  # 1-10, null when not scored
            ("overall", pa.float64(), True),
            ("explanation", pa.string(), True),
            ("parse_status", pa.string(), False),  # ok | partial | unparsed | failed | human
            ("raw_text", pa.string(), True),
            ("prompt_version", pa.string(), True),
            ("tokens_in", pa.int64(), True),
            ("tokens_out", pa.int64(), True),
            ("cost_usd", pa.float64(), True),
            ("latency_s", pa.float64(), True),
            ("attempts", pa.int32(), True),
            ("error", pa.string(), True),
            ("turn", pa.int32(), True),  # null: single-turn; 1..n: that turn; 0: the whole conversation
        ),
    )
)

#: Per-annotation extras of a human rating study (mentalchat.human_study): what judgments cannot hold.
HUMAN_FLAGS = register_table(
    TableSpec(
        name="human_flags",
        version=1,
        description=(
            "One row per human annotation imported from a rating study (jobs/human_study.py import): the "
            "rater's crisis-concern checkbox, comment and time spent, unblinded to (question, model). "
            "The scores themselves are judgments rows with judge 'human:<rater>'."
        ),
        schema=_schema(
            ("item", pa.string(), False),  # the study's opaque item id
            ("question_id", pa.string(), False),
            ("model", pa.string(), False),
            ("judge", pa.string(), False),  # human:<rater>
            ("annotator", pa.string(), True),  # the Label Studio user who submitted it
            ("crisis_concern", pa.bool_(), False),
            ("lead_time_s", pa.float64(), True),
            ("comment", pa.string(), True),
        ),
    )
)

# ---------------------------------------------------------------------------------------------
# Stage 2 and 5 tables are registered below by their issues (manifest, means, gains, wins,
# agreement, reliability).
# ---------------------------------------------------------------------------------------------

# --- Stage 4 extras (mentalchat.judge): judge-reliability controls and the crisis probe ---------
RELIABILITY = register_table(
    TableSpec(
        name="reliability",
        version=1,
        description=(
            "Judge-reliability controls per (judge, prompt version, check, metric). value: "
            "empty_answer = mean score given to an empty answer (rate = share above the threshold); "
            "length_bias = mean score change when filler is appended (rate = share that rose); "
            "self_consistency = mean absolute difference between two gradings (rate = exact agreement); "
            "position_bias (pairwise judging, metric overall) = share of pairs whose winner changes when the "
            "two answers swap places (rate = share of decisive verdicts that chose the first position, "
            "0.5 = none; n = pairs read in both orders)."
        ),
        schema=_schema(
            ("judge", pa.string(), False),
            ("prompt_version", pa.string(), False),
            ("check", pa.string(), False),  # empty_answer | length_bias | self_consistency | position_bias
            ("metric", pa.string(), False),  # one of the seven, or overall
            ("n", pa.int64(), False),
            ("n_failed", pa.int64(), False),
            ("value", pa.float64(), True),
            ("rate", pa.float64(), True),
            ("flagged", pa.bool_(), False),
            ("detail", pa.string(), True),  # JSON: thresholds, max, ...
        ),
    )
)

CRISIS = register_table(
    TableSpec(
        name="crisis",
        version=1,
        description="Crisis-probe escalation checks: one row per (probe question, model, checker).",
        schema=_schema(
            ("question_id", pa.string(), False),
            ("category", pa.string(), True),  # suicidal_ideation | self_harm | abuse | harm_to_others | acute_psychosis
            ("model", pa.string(), False),
            ("base_model", pa.string(), True),
            ("data_config", pa.string(), True),
            ("checker", pa.string(), False),  # "rule" or a judge label
            ("escalated", pa.bool_(), True),  # null when the check failed
            ("detail", pa.string(), True),  # matched phrase or the judge's reason
            ("raw_text", pa.string(), True),
            ("prompt_version", pa.string(), True),
            ("error", pa.string(), True),
        ),
    )
)

PAIRWISE = register_table(
    TableSpec(
        name="pairwise",
        version=1,
        description=(
            "Pairwise judgments (judge.pairwise): one row per (question, judge, prompt version, model_a, "
            "model_b, order). model_a/model_b is the canonical pair (pairs=base: the untuned model first; "
            "pairs=all: sorted by name); order ab showed model_a as Reply A, ba showed model_b first. "
            "verdict_position is the position the judge chose, winner the model it names (or tie); both "
            "null when the call failed or could not be read (error says why). A pair's combined verdict "
            "(mentalchat.judge.pairwise.pairwise_outcomes) is the winner both orders agree on, else a tie."
        ),
        schema=_schema(
            ("question_id", pa.string(), False),
            ("judge", pa.string(), False),
            ("prompt_version", pa.string(), False),
            ("model_a", pa.string(), False),
            ("model_b", pa.string(), False),
            ("base_model", pa.string(), True),
            ("data_config", pa.string(), True),  # of the fine-tuned side (pairs=base); null for pairs=all
            ("order", pa.string(), False),  # ab | ba
            ("verdict_position", pa.string(), True),  # first | second | tie
            ("winner", pa.string(), True),  # model_a, model_b or tie
            ("reason", pa.string(), True),
            ("raw_text", pa.string(), True),
            ("error", pa.string(), True),
        ),
    )
)

# --- Stage 2 (mentalchat.finetune): the fine-tuning manifest ------------------------------------
MANIFEST = register_table(
    TableSpec(
        name="manifest",
        version=1,
        description=(
            "One row per fine-tuning trial (base model × data configuration × grid point): where its "
            "unmerged LoRA adapter is, how it was trained and how it did."
        ),
        schema=_schema(
            ("trial_id", pa.string(), False),  # stable name, also the adapter folder's name
            ("model_id", pa.string(), False),  # label for answers/judgments (= trial_id)
            ("experiment", pa.string(), False),  # Ray Tune experiment name
            ("base_model", pa.string(), False),  # label
            ("base_model_path", pa.string(), False),  # hub id, folder or s3:// path as loaded
            ("data_config", pa.string(), False),  # synthetic | interview | combined
            ("overrides", pa.string(), False),  # JSON: this trial's grid point
            ("hyperparameters", pa.string(), False),  # JSON: effective quantization/lora/optim/train/scaling
            ("prompt_format", pa.string(), False),  # chat_template | chat_template:system-in-user | mentalchat-instruction-v1
            ("prompt_format_setting", pa.string(), False),  # as configured: auto | chat_template | instruction
            ("steps", pa.int64(), False),
            ("max_steps", pa.int64(), False),
            ("train_loss", pa.float64(), True),  # last logged training loss
            ("eval_loss", pa.float64(), True),  # held-out loss at the final step
            ("best_eval_loss", pa.float64(), True),
            ("adapter_path", pa.string(), False),  # unmerged adapter folder (vLLM LoRA)
            ("merged_path", pa.string(), True),  # bf16 merged model, when merge.enabled
            ("checkpoint_path", pa.string(), True),  # exported Ray Train checkpoint
            ("wall_time_s", pa.float64(), False),  # TorchTrainer.fit, start-up included
            ("train_seconds", pa.float64(), True),  # inside the training loop, across restarts
            ("restarts", pa.int32(), True),  # worker-group restarts resumed from a checkpoint
            ("tokens_trained", pa.int64(), False),  # non-padding tokens through the model
            ("tokens_in_loss", pa.int64(), True),  # answer tokens (the loss)
            ("tokens_processed", pa.int64(), True),  # padding included
            ("n_train", pa.int64(), False),
            ("n_eval", pa.int64(), False),
            ("num_workers", pa.int32(), False),
            ("config_hash", pa.string(), False),
        ),
    )
)

# --- Stage 5 (mentalchat.stats): statistics tables ---------------------------------------------
# metric: one of the seven metric names, "overall" or "mean_of_7" (mentalchat.core.rubric).
MEANS = register_table(
    TableSpec(
        name="means",
        version=1,
        description=(
            "Mean score per (model, judge, metric) with a percentile bootstrap CI over questions; "
            "n = scored items, n_items = all judgments (n_items - n could not be scored)."
        ),
        schema=_schema(
            ("model", pa.string(), False),
            ("base_model", pa.string(), True),
            ("data_config", pa.string(), True),
            ("judge", pa.string(), False),  # as the judge calls itself; humans "human:<rater>"
            ("metric", pa.string(), False),
            ("mean", pa.float64(), True),
            ("sd", pa.float64(), True),
            ("n", pa.int64(), False),
            ("n_items", pa.int64(), False),
            ("ci_low", pa.float64(), True),
            ("ci_high", pa.float64(), True),
        ),
    )
)

GAINS = register_table(
    TableSpec(
        name="gains",
        version=1,
        description=(
            "Fine-tuned minus base per (base model, data configuration, model, judge, metric) on "
            "paired questions: difference and relative gain with paired bootstrap CIs, Wilcoxon "
            "signed-rank p-value and its multiple-comparison adjustment."
        ),
        schema=_schema(
            ("base_model", pa.string(), False),
            ("data_config", pa.string(), False),
            ("model", pa.string(), False),  # the fine-tuned model
            ("base_model_name", pa.string(), False),  # the untuned model it is compared with
            ("judge", pa.string(), False),
            ("metric", pa.string(), False),
            ("n_pairs", pa.int64(), False),
            ("mean_base", pa.float64(), True),
            ("mean_tuned", pa.float64(), True),
            ("diff", pa.float64(), True),
            ("diff_ci_low", pa.float64(), True),
            ("diff_ci_high", pa.float64(), True),
            ("rel_gain", pa.float64(), True),  # mean_tuned / mean_base - 1
            ("rel_gain_ci_low", pa.float64(), True),
            ("rel_gain_ci_high", pa.float64(), True),
            ("wilcoxon_stat", pa.float64(), True),
            ("p_value", pa.float64(), True),
            ("p_adjusted", pa.float64(), True),
            ("significant", pa.bool_(), True),  # p_adjusted < 1 - ci_level
        ),
    )
)

WINS = register_table(
    TableSpec(
        name="wins",
        version=1,
        description=(
            "Configurations of each base model ranked per (judge, metric); win_count = for how "
            "many of n_bases base models this configuration scores highest (ties win for each)."
        ),
        schema=_schema(
            ("judge", pa.string(), False),
            ("metric", pa.string(), False),
            ("base_model", pa.string(), False),
            ("data_config", pa.string(), False),
            ("model", pa.string(), False),
            ("mean", pa.float64(), False),
            ("rank", pa.int64(), False),
            ("is_winner", pa.bool_(), False),
            ("tied", pa.bool_(), False),
            ("win_count", pa.int64(), False),
            ("n_bases", pa.int64(), False),
        ),
    )
)

AGREEMENT = register_table(
    TableSpec(
        name="agreement",
        version=2,
        description=(
            "Inter-evaluator agreement per metric on shared (question, model) items: scope 'pair' "
            "for two evaluators (Cohen's kappa unweighted/linear/quadratic, Krippendorff's ordinal "
            "alpha, Spearman, ICC(C,1), exact agreement and mean differences, each with a bootstrap "
            "CI over questions; ICC(A,1) with its F-based CI); scope 'all' across every evaluator "
            "(Fleiss' kappa and Krippendorff's alpha with bootstrap CIs). pair_kind: judge-judge, "
            "judge-human or human-human (human raters are 'human:<rater>'). mean_of_7 "
            "(continuous) gets no kappa and no alpha. v2: the CIs besides the kappas', pair_kind."
        ),
        schema=_schema(
            ("scope", pa.string(), False),  # pair | all
            ("evaluator_a", pa.string(), True),  # null for scope 'all'
            ("evaluator_b", pa.string(), True),
            ("pair_kind", pa.string(), True),  # judge-judge | judge-human | human-human; null for 'all'
            ("n_evaluators", pa.int64(), False),
            ("metric", pa.string(), False),
            ("n_items", pa.int64(), False),
            *[(c, pa.float64(), True) for c in (
                "kappa", "kappa_ci_low", "kappa_ci_high",
                "kappa_linear", "kappa_linear_ci_low", "kappa_linear_ci_high",
                "kappa_quadratic", "kappa_quadratic_ci_low", "kappa_quadratic_ci_high",
                "alpha_ordinal", "alpha_ordinal_ci_low", "alpha_ordinal_ci_high",
                "spearman", "spearman_ci_low", "spearman_ci_high", "spearman_p",
                "icc", "icc_ci_low", "icc_ci_high",
                "icc_consistency", "icc_consistency_ci_low", "icc_consistency_ci_high",
                "fleiss_kappa", "fleiss_kappa_ci_low", "fleiss_kappa_ci_high",
                "exact_agreement", "exact_agreement_ci_low", "exact_agreement_ci_high",
                "mean_diff", "mean_diff_ci_low", "mean_diff_ci_high",
                "mean_abs_diff", "mean_abs_diff_ci_low", "mean_abs_diff_ci_high",
            )],
        ),
    )
)

COVERAGE = register_table(
    TableSpec(
        name="coverage",
        version=1,
        description=(
            "Per (model, judge): judgments by parse status and the scores that are missing, so "
            "unscored items are reported rather than dropped from denominators unseen."
        ),
        schema=_schema(
            ("model", pa.string(), False),
            ("base_model", pa.string(), True),
            ("data_config", pa.string(), True),
            ("judge", pa.string(), False),
            ("n_items", pa.int64(), False),
            ("n_ok", pa.int64(), False),
            ("n_partial", pa.int64(), False),
            ("n_unparsed", pa.int64(), False),
            ("n_failed", pa.int64(), False),
            ("n_human", pa.int64(), False),
            ("n_other_status", pa.int64(), False),
            ("n_all_metrics", pa.int64(), False),  # judgments with all seven metric scores
            ("n_missing_metric_scores", pa.int64(), False),
            ("n_missing_overall", pa.int64(), False),
        ),
    )
)

DATASET_PROFILE = register_table(
    TableSpec(
        name="dataset_profile",
        version=1,
        description=(
            "Composition of a qa_pairs dataset: facet source/topic/crisis (value = count) and "
            "input_words/output_words by source (key = statistic, value = words)."
        ),
        schema=_schema(
            ("facet", pa.string(), False),
            ("group", pa.string(), False),  # a source, or "all"
            ("key", pa.string(), False),
            ("value", pa.float64(), False),
        ),
    )
)


MIXED_EFFECTS = register_table(
    TableSpec(
        name="mixed_effects",
        version=1,
        description=(
            "Gains as a linear mixed model per (judge, metric): score ~ C(data_config, "
            "Treatment('base')) + C(base_model) + (1 | question_id), REML (statsmodels MixedLM); one "
            "row per fine-tuned configuration with its effect over the untuned models, Wald CI and "
            "p-value. note: a failed, non-converged or singular fit (question variance 0) and the "
            "warnings statsmodels gave."
        ),
        schema=_schema(
            ("judge", pa.string(), False),
            ("metric", pa.string(), False),
            ("term", pa.string(), False),  # the model's coefficient name
            ("data_config", pa.string(), False),
            ("estimate", pa.float64(), True),
            ("se", pa.float64(), True),
            ("ci_lo", pa.float64(), True),
            ("ci_hi", pa.float64(), True),
            ("p_value", pa.float64(), True),
            ("n_obs", pa.int64(), False),
            ("n_questions", pa.int64(), False),
            ("n_models", pa.int64(), False),
            ("group_var", pa.float64(), True),  # variance of the question intercepts
            ("resid_var", pa.float64(), True),
            ("converged", pa.bool_(), False),
            ("note", pa.string(), True),
        ),
    )
)

LENGTH_CONTROL = register_table(
    TableSpec(
        name="length_control",
        version=1,
        description=(
            "Length-controlled scores per (judge, metric, model): score = a_model + b * standardised "
            "answer words; slope_* = b per 100 words (bootstrap CI over questions, cluster-robust SE "
            "and p-value; the same on every row of a judge and metric), lc_mean = a_model, the "
            "model's predicted score at the mean length ref_words, beside its raw mean."
        ),
        schema=_schema(
            ("judge", pa.string(), False),
            ("metric", pa.string(), False),
            ("model", pa.string(), False),
            ("base_model", pa.string(), True),
            ("data_config", pa.string(), True),
            ("n", pa.int64(), False),
            ("mean_words", pa.float64(), False),
            ("raw_mean", pa.float64(), False),
            *[(c, pa.float64(), True) for c in (
                "lc_mean", "lc_ci_low", "lc_ci_high", "slope_per_100_words", "slope_ci_low",
                "slope_ci_high", "slope_se", "slope_p_value")],
            ("ref_words", pa.float64(), False),
            ("sd_words", pa.float64(), False),
            ("n_obs", pa.int64(), False),
            ("n_questions", pa.int64(), False),
        ),
    )
)

SAFETY = register_table(
    TableSpec(
        name="safety",
        version=1,
        description=(
            "Crisis-probe escalation rate per (model, checker, category) from the judge stage's "
            "crisis table, category 'all' for every probe: rate = escalated / checked with a Wilson "
            "CI; n_failed checks gave no verdict."
        ),
        schema=_schema(
            ("model", pa.string(), False),
            ("base_model", pa.string(), True),
            ("data_config", pa.string(), True),
            ("checker", pa.string(), False),  # "rule" or a judge
            ("category", pa.string(), False),
            ("n_probes", pa.int64(), False),
            ("n_checked", pa.int64(), False),
            ("n_failed", pa.int64(), False),
            ("n_escalated", pa.int64(), False),
            ("rate", pa.float64(), True),
            ("ci_low", pa.float64(), True),
            ("ci_high", pa.float64(), True),
        ),
    )
)

JUDGE_CONTROLS = register_table(
    TableSpec(
        name="judge_controls",
        version=1,
        description=(
            "Judge-reliability checks per (judge, prompt version, check): empty_answer, length_bias "
            "(padded answer), self_consistency (repeat), position_bias, summarised from the "
            "reliability table (value and rate of the overall score; position bias from the "
            "pairwise table when the reliability table has none; empty answers from the judgments "
            "when there is no reliability table), with Wilson CIs on proportions. status: passed, "
            "FAILED (a metric flagged; detail names them) or 'not run' (detail says why)."
        ),
        schema=_schema(
            ("judge", pa.string(), False),
            ("prompt_version", pa.string(), True),
            ("check", pa.string(), False),
            ("status", pa.string(), False),  # passed | FAILED | not run
            ("flagged", pa.bool_(), False),
            ("n", pa.int64(), False),
            ("n_failed", pa.int64(), False),
            *[(c, pa.float64(), True) for c in (
                "value", "value_ci_low", "value_ci_high", "rate", "rate_ci_low", "rate_ci_high")],
            ("metrics_flagged", pa.int64(), False),
            ("n_metrics", pa.int64(), False),
            ("threshold", pa.float64(), True),
            ("source", pa.string(), True),  # reliability table | pairwise table | judgments of empty answers
            ("detail", pa.string(), True),
        ),
    )
)

PAIRWISE_WINS = register_table(
    TableSpec(
        name="pairwise_wins",
        version=1,
        description=(
            "Pairwise verdicts per (judge, prompt version, model_a, model_b) over questions judged "
            "in both orders, by the judge stage's rule: the winner both orders agree on, else a tie "
            "(ties: at least one order tied; inconsistent: opposite winners, also a tie); "
            "win_rate_a = (wins_a + (ties + inconsistent)/2) / n with a Wilson CI."
        ),
        schema=_schema(
            ("judge", pa.string(), False),
            ("prompt_version", pa.string(), True),
            ("model_a", pa.string(), False),
            ("model_b", pa.string(), False),
            ("base_model", pa.string(), True),
            ("data_config", pa.string(), True),
            ("n", pa.int64(), False),
            ("wins_a", pa.int64(), False),
            ("wins_b", pa.int64(), False),
            ("ties", pa.int64(), False),
            ("inconsistent", pa.int64(), False),
            ("win_rate_a", pa.float64(), True),
            ("ci_low", pa.float64(), True),
            ("ci_high", pa.float64(), True),
        ),
    )
)

TURN_MEANS = register_table(
    TableSpec(
        name="turn_means",
        version=1,
        description=(
            "Multi-turn questions: mean score per (model, judge, metric, turn) with a percentile "
            "bootstrap CI over the questions judged at that turn; turn 1..n: that counsellor turn on "
            "the seven metrics, overall and mean_of_7 (as the means table), turn 0: the whole "
            "conversation on consistency, memory and risk_escalation. Written only when the "
            "judgments hold multi-turn rows; every other statistics table uses single-turn rows only."
        ),
        schema=_schema(
            ("model", pa.string(), False),
            ("base_model", pa.string(), True),
            ("data_config", pa.string(), True),
            ("judge", pa.string(), False),
            ("metric", pa.string(), False),
            ("turn", pa.int32(), False),  # 1..n: that turn; 0: the whole conversation
            ("mean", pa.float64(), True),
            ("sd", pa.float64(), True),
            ("n", pa.int64(), False),  # scored questions
            ("n_items", pa.int64(), False),  # judged questions (scored or not)
            ("ci_low", pa.float64(), True),
            ("ci_high", pa.float64(), True),
        ),
    )
)

# ---------------------------------------------------------------------------------------------
# Documentation: docs/architecture.md embeds this rendering (a test keeps the two in step).
# ---------------------------------------------------------------------------------------------
def render_markdown() -> str:
    """Every registered table as Markdown: name, version, purpose and columns."""
    out: list[str] = []
    for spec in TABLES.values():
        out.append(f"### `{spec.name}` (v{spec.version})\n")
        out.append(" ".join(spec.description.split()) + "\n")
        out.append("| column | type | nullable |\n|---|---|---|")
        for field in spec.schema:
            out.append(f"| `{field.name}` | {field.type} | {'yes' if field.nullable else 'no'} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":  # python -m mentalchat.schemas > tables.md
    print(render_markdown(), end="")
