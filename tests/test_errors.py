"""One exception base: every error class mentalchat defines derives from MentalchatError."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

from mentalchat.config import ConfigError, load_config_dict
from mentalchat.errors import InputError, InputNotFoundError, MentalchatError
from mentalchat.io import iter_jsonl

PACKAGE = Path(__file__).resolve().parents[1] / "mentalchat"


def _error_classes() -> list[tuple[str, str, list[str]]]:
    """(file, class, bases) of every public class whose name ends in Error/Refused or that subclasses an exception."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = [ast.unparse(b) for b in node.bases]
            if node.name.endswith(("Error", "Refused", "Exception")) or any(
                b.endswith(("Error", "Exception")) for b in bases
            ):
                out.append((str(path.relative_to(PACKAGE.parent)), node.name, bases))
    return out


def test_every_error_class_derives_from_the_base() -> None:
    import importlib

    classes = _error_classes()
    assert len(classes) >= 15  # the walk found the project's error classes
    wrong = []
    for file, name, _ in classes:
        module = importlib.import_module(file[:-3].replace("/", "."))
        cls = getattr(module, name)
        if not issubclass(cls, MentalchatError):
            wrong.append(f"{file}: {name}")
    assert not wrong, "error classes outside the MentalchatError hierarchy:\n" + "\n".join(wrong)


def test_errors_keep_their_builtin_base_and_survive_pickling() -> None:
    err = InputError.at("answers.jsonl", 3, "expected a JSON object")
    assert isinstance(err, ValueError) and str(err) == "answers.jsonl:3: expected a JSON object"
    assert (err.path, err.line, err.where) == ("answers.jsonl", 3, "answers.jsonl:3")
    back = pickle.loads(pickle.dumps(err))  # errors cross Ray worker boundaries
    assert type(back) is InputError and str(back) == str(err) and back.line == 3
    missing = InputNotFoundError("answers not found: x", path="x")
    assert isinstance(missing, FileNotFoundError) and missing.where == "x"


def test_jsonl_errors_carry_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"a": 1}\n\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(InputError) as info:
        list(iter_jsonl(path))
    assert info.value.path == str(path) and info.value.line == 3
    assert str(info.value) == f"{path}:3: expected a JSON object"

    class Plain(ValueError):
        pass

    with pytest.raises(Plain, match=r"q\.jsonl:3: expected a JSON object"):  # other classes get the message only
        list(iter_jsonl(path, error=Plain))


def test_yaml_errors_carry_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("judge:\n  judges: [\n  budget_usd: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config_dict(path)
    assert info.value.path == str(path) and info.value.line is not None
    assert str(info.value).startswith(f"{path}:{info.value.line}: invalid YAML")
