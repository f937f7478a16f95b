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


class SchemaError(ValueError):
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
        description="De-identified transcript pages (never raw text): the paraphraser's input.",
        schema=_schema(
            ("transcript_id", pa.string(), False),
            ("page", pa.int32(), False),
            ("source_file", pa.string(), False),
            ("text_deid", pa.string(), False),
            ("n_words", pa.int32(), False),
            ("deid_counts", pa.string(), False),  # JSON {entity_type: count}
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
            ("filter", pa.string(), False),
            ("reason", pa.string(), False),
            ("topic", pa.string(), True),
            ("page_ref", pa.string(), True),
            ("input", pa.string(), True),
            ("output", pa.string(), True),
        ),
    )
)

# ---------------------------------------------------------------------------------------------
# Stage 3: answers (mentalchat.generate)
# ---------------------------------------------------------------------------------------------
ANSWERS = register_table(
    TableSpec(
        name="answers",
        version=1,
        description="One answer per (question, model) from a base model or an adapter.",
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
        ),
    )
)

# ---------------------------------------------------------------------------------------------
# Stage 4: judgments (mentalchat.judge)
# ---------------------------------------------------------------------------------------------
JUDGMENTS = register_table(
    TableSpec(
        name="judgments",
        version=1,
        description="One row per (question, model, judge, metric); human ratings use judge 'human:<rater>'.",
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
        ),
    )
)

# ---------------------------------------------------------------------------------------------
# Stage 2 and 5 tables are registered below by their issues (manifest, means, gains, wins,
# agreement, reliability).
# ---------------------------------------------------------------------------------------------
