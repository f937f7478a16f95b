"""Read interview transcripts (.txt, .jsonl, .docx) into pages.

* ``.txt``: speaker-labelled lines (``Interviewer: ...``); a form feed (``\\f``) separates pages;
  without form feeds pages are cut at line boundaries by a word budget.
* ``.jsonl``: one object per line with ``text`` and optionally ``page`` (int), ``speaker`` and
  ``transcript_id``. Lines with ``page`` are grouped by page; lines without are turns, cut by the
  word budget. One file may hold several transcripts (``transcript_id``).
* ``.docx``: one paragraph per turn; explicit page breaks separate pages, else the word budget.

A bad file (empty, binary, not UTF-8, over the size limit, a corrupt .docx) or a malformed JSONL
line becomes a :class:`ReadIssue` naming the file (and line); reading goes on with the rest.

Transcript ids are hashes of the file's path relative to the transcript folder (plus the JSONL
``transcript_id``), because file names may themselves carry names: the output never holds a path.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mentalchat.errors import InputNotFoundError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Page",
    "ReadIssue",
    "ReadReport",
    "Transcript",
    "list_transcript_files",
    "read_file",
    "read_transcripts",
    "split_by_words",
    "transcript_id",
]

SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".docx")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")  # keeps \t \n \f \r
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Page:
    number: int  # 1-based
    text: str


@dataclass
class Transcript:
    """One transcript in memory. ``source`` is a local path for messages only; never published."""

    transcript_id: str
    source: str
    pages: list[Page]


@dataclass
class ReadIssue:
    """A file or line that was skipped, with a message naming it."""

    path: str
    reason: str
    line: int | None = None
    kind: str = "file"  # file | line

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.reason}"


@dataclass
class ReadReport:
    transcripts: list[Transcript] = field(default_factory=list)
    issues: list[ReadIssue] = field(default_factory=list)
    files_read: int = 0

    @property
    def skipped_files(self) -> int:
        return sum(1 for i in self.issues if i.kind == "file")

    @property
    def skipped_lines(self) -> int:
        return sum(1 for i in self.issues if i.kind == "line")


def transcript_id(relative_path: str, inner: str | None = None) -> str:
    """Stable, name-free id: ``t-`` + 12 hex of sha256(relative path [# inner id])."""
    key = relative_path.replace("\\", "/") + (f"#{inner}" if inner is not None else "")
    return "t-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def split_by_words(lines: Iterable[str], budget: int) -> list[str]:
    """Group lines into pages of at most ``budget`` words (a longer line is cut at sentences)."""
    pages: list[str] = []
    cur: list[str] = []
    n = 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        pieces = [line]
        if len(line.split()) > budget:
            pieces = _cut_long(line, budget)
        for piece in pieces:
            w = len(piece.split())
            if cur and n + w > budget:
                pages.append("\n".join(cur))
                cur, n = [], 0
            cur.append(piece)
            n += w
    if cur:
        pages.append("\n".join(cur))
    return pages


def _cut_long(line: str, budget: int) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    n = 0
    for sent in _SENTENCE.split(line):
        words = sent.split()
        while len(words) > budget:  # one enormous sentence: cut by words
            if cur:
                out.append(" ".join(cur))
                cur, n = [], 0
            out.append(" ".join(words[:budget]))
            words = words[budget:]
        if cur and n + len(words) > budget:
            out.append(" ".join(cur))
            cur, n = [], 0
        cur.extend(words)
        n += len(words)
    if cur:
        out.append(" ".join(cur))
    return out


class _FileError(Exception):
    pass


def _decode(data: bytes, path: str) -> str:
    """Bytes → text: UTF-8 (BOM optional) or UTF-16 with BOM; anything else is an error."""
    if not data.strip():
        raise _FileError("empty file")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise _FileError(f"mis-encoded: invalid UTF-16 ({exc.reason})") from None
    else:
        if b"\x00" in data[:8192]:
            raise _FileError("binary file (NUL bytes); expected UTF-8 text")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise _FileError(
                f"mis-encoded: not valid UTF-8 at byte {exc.start} (line {line}); re-save the file as UTF-8"
            ) from None
    bad = len(_CONTROL.findall(text[:65536]))
    if bad > max(8, len(text[:65536]) // 100):
        raise _FileError(f"binary file ({bad} control characters); expected UTF-8 text")
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _pages(texts: list[str]) -> list[Page]:
    return [Page(i, t) for i, t in enumerate((t.strip() for t in texts), start=1) if t] if texts else []


def _renumber(pages: list[Page]) -> list[Page]:
    return [Page(i, p.text) for i, p in enumerate((p for p in pages if p.text.strip()), start=1)]


def _read_txt(text: str, budget: int) -> list[Page]:
    if "\f" in text:
        return _renumber(_pages(text.split("\f")))
    return _pages(split_by_words(text.split("\n"), budget))


def _read_jsonl(text: str, rel: str, budget: int, issues: list[ReadIssue]) -> list[tuple[str | None, list[Page]]]:
    groups: dict[str | None, list[tuple[int | None, str]]] = {}
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            issues.append(ReadIssue(rel, f"malformed JSON ({exc.msg} at column {exc.colno})", lineno, "line"))
            continue
        if not isinstance(obj, dict):
            issues.append(ReadIssue(rel, f"expected a JSON object, got {type(obj).__name__}", lineno, "line"))
            continue
        body = obj.get("text")
        if not isinstance(body, str) or not body.strip():
            issues.append(ReadIssue(rel, "missing or empty 'text' (a string)", lineno, "line"))
            continue
        page = obj.get("page")
        if page is not None and (not isinstance(page, int) or isinstance(page, bool) or page < 1):
            issues.append(ReadIssue(rel, f"'page' must be a positive integer, got {page!r}", lineno, "line"))
            continue
        speaker = obj.get("speaker")
        if speaker is not None and not isinstance(speaker, str):
            issues.append(ReadIssue(rel, "'speaker' must be a string", lineno, "line"))
            continue
        tid = obj.get("transcript_id", obj.get("transcript"))
        if tid is not None and not isinstance(tid, (str, int)):
            issues.append(ReadIssue(rel, "'transcript_id' must be a string", lineno, "line"))
            continue
        line = f"{speaker.strip()}: {body.strip()}" if speaker else body.strip()
        groups.setdefault(None if tid is None else str(tid), []).append((page, line))
    out = []
    for tid, rows in groups.items():
        if any(p is not None for p, _ in rows):
            by_page: dict[int, list[str]] = {}
            last = 1
            for p, line in rows:
                last = p if p is not None else last
                by_page.setdefault(last, []).append(line)
            pages = _renumber([Page(p, "\n".join(by_page[p])) for p in sorted(by_page)])
        else:
            pages = _pages(split_by_words([line for _, line in rows], budget))
        out.append((tid, pages))
    return out


def _read_docx(path: Path, budget: int) -> list[Page]:
    try:
        import docx
        from docx.opc.exceptions import PackageNotFoundError
    except ImportError as exc:  # pragma: no cover - python-docx is in the dataset extra
        raise _FileError("reading .docx needs python-docx (pip install 'mentalchat[dataset]')") from exc
    try:
        doc = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as exc:
        raise _FileError(f"not a readable .docx ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # zipfile.BadZipFile, lxml errors: all mean a corrupt file
        raise _FileError(f"corrupt .docx ({type(exc).__name__}: {exc})") from None
    pages: list[list[str]] = [[]]
    explicit = False
    for para in doc.paragraphs:
        if para.paragraph_format.page_break_before and pages[-1]:
            pages.append([])
            explicit = True
        text = para.text.strip()
        if text:
            pages[-1].append(text)
        xml = para._p.xml
        if 'w:type="page"' in xml:
            pages.append([])
            explicit = True
    if explicit:
        return _renumber(_pages(["\n".join(p) for p in pages]))
    return _pages(split_by_words([line for p in pages for line in p], budget))


def read_file(
    path: str | Path, root: str | Path, *, page_words: int = 400, max_file_bytes: int = 20_000_000
) -> tuple[list[Transcript], list[ReadIssue]]:
    """Read one transcript file; problems come back as issues (never raised)."""
    path = Path(path)
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.name
    issues: list[ReadIssue] = []
    shown = str(path)
    suffix = path.suffix.lower()
    try:
        if suffix not in SUPPORTED_SUFFIXES:
            raise _FileError(f"unsupported file type {suffix or '(none)'}; expected {', '.join(SUPPORTED_SUFFIXES)}")
        size = path.stat().st_size
        if size > max_file_bytes:
            raise _FileError(
                f"file is {size / 1e6:.1f} MB, over the {max_file_bytes / 1e6:.1f} MB limit "
                "(dataset.interview.max_file_bytes); split it or raise the limit"
            )
        if size == 0:
            raise _FileError("empty file")
        if suffix == ".docx":
            pages = _read_docx(path, page_words)
            groups: list[tuple[str | None, list[Page]]] = [(None, pages)]
        else:
            text = _decode(path.read_bytes(), shown)
            if suffix == ".txt":
                groups = [(None, _read_txt(text, page_words))]
            else:
                groups = _read_jsonl(text, shown, page_words, issues)
    except _FileError as exc:
        return [], [ReadIssue(shown, str(exc))]
    except OSError as exc:
        return [], [ReadIssue(shown, f"cannot read: {exc.strerror or exc}")]
    out = []
    for inner, pages in groups:
        if not pages:
            issues.append(ReadIssue(shown, "no text" if inner is None else f"transcript {inner!r} has no text"))
            continue
        out.append(Transcript(transcript_id(rel, inner), shown, pages))
    if not out and not any(i.kind == "file" for i in issues):
        issues.append(ReadIssue(shown, "no usable lines"))
    return out, issues


def list_transcript_files(folder: str | Path) -> list[Path]:
    """Every regular file under ``folder`` (sorted), hidden files excepted; unsupported ones too,
    so that they are reported rather than silently ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputNotFoundError(f"transcript folder not found: {folder}", path=folder)
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_transcripts(
    folder: str | Path, *, page_words: int = 400, max_file_bytes: int = 20_000_000
) -> ReadReport:
    """Read every file under ``folder``; bad files and lines are reported, not fatal."""
    report = ReadReport()
    for path in list_transcript_files(folder):
        ts, issues = read_file(path, folder, page_words=page_words, max_file_bytes=max_file_bytes)
        report.files_read += 1
        report.transcripts.extend(ts)
        report.issues.extend(issues)
    return report
