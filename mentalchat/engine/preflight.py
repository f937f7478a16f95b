"""One cheap call per engine before a paid sweep, so a wrong key, a retired model or a reply the
stage cannot read fails in seconds, not after thousands of calls.

Why here and not in each stage: the judge and the synthetic generator both run long paid sweeps;
what to check (key, model, structured output, a readable reply) and how to explain a failure
(what to change, in which config key) is the same. A stage builds one :class:`PreflightCheck` per
(engine, prompt version) from a real request of its sweep, and :func:`run_preflight` makes the
calls, hands the results back (the stage stores them, so nothing is paid twice) and raises one
:class:`PreflightError` naming every engine that failed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Literal

from mentalchat.engine.base import create_engine
from mentalchat.engine.capabilities import retirement_for
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.types import ChatRequest, ChatResult
from mentalchat.errors import MentalchatError

__all__ = ["PreflightCheck", "PreflightError", "PreflightMode", "diagnose", "run_preflight", "should_preflight"]

PreflightMode = Literal["auto", "always", "never"]


class PreflightError(MentalchatError):
    """An engine failed its check call; the message says which engine and what to change."""


@dataclasses.dataclass
class PreflightCheck:
    """One check: an engine (by its config name), a real request of the sweep, and how the stage reads replies."""

    engine_name: str
    engine: EngineConfig
    request: ChatRequest
    readable: Callable[[str], bool]
    label: str = ""  # e.g. the prompt version, for the message


def should_preflight(mode: PreflightMode, estimated_cost_usd: float, min_cost_usd: float) -> bool:
    """``always``; ``never``; ``auto``: when the sweep is estimated to cost at least ``min_cost_usd``."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    return estimated_cost_usd >= min_cost_usd


def _status(error: str) -> int | None:
    m = re.search(r"HTTP (\d{3})", error)
    return int(m.group(1)) if m else None


def diagnose(check: PreflightCheck, result: ChatResult, section: str = "engines") -> str | None:
    """What is wrong, and what to change, or None when the engine passed."""
    cfg = check.engine
    key = f"{section}.{check.engine_name}"
    where = f"engine {check.engine_name!r} ({cfg.backend}, model {cfg.model!r}{', ' + check.label if check.label else ''})"
    if result.ok:
        if check.readable(result.text or ""):
            return None
        excerpt = (result.text or "").strip().replace("\n", " ")[:160]
        return (
            f"{where}: the reply could not be read ({excerpt!r}); the model may not follow the prompt's format: "
            f"try another model, or set {key}.capabilities.structured (json_schema, json_object or text)"
        )
    error = result.error or "no text returned"
    status = _status(error)
    low = error.lower()
    if result.error_kind == "budget":
        return f"{where}: the budget cap refused even the check call; raise the stage's budget_usd"
    if status in (401, 403) or "api key not valid" in low or "api_key_invalid" in low:
        return (
            f"{where}: the provider refused the API key ({error}); put a valid key in ${cfg.api_key_env} "
            f"(or set {key}.api_key_env to the variable that holds it)"
        )
    if status == 404:
        retired = retirement_for(cfg.backend, cfg.model)
        why = f"{retired.describe()}; " if retired is not None else ""
        return (
            f"{where}: the endpoint does not serve this model ({error}); {why}set {key}.model to a served model "
            "(configs/judges-current.yaml lists current ones)"
        )
    if status == 429 and ("quota" in low or "billing" in low or "credit" in low):
        return f"{where}: the account's quota or credit is used up ({error}); add credit or raise the quota"
    if result.error_kind in ("connection", "timeout"):
        return f"{where}: could not reach {cfg.base_url or 'the provider'} ({error}); check {key}.base_url and the network"
    if status == 400 or result.error_kind == "http_4xx":
        return (
            f"{where}: the request was refused ({error}); if the model lacks a feature, say so in "
            f"{key}.capabilities (structured, max_tokens_param, temperature, seed, system_role)"
        )
    return f"{where}: the check call failed ({error})"


def run_preflight(
    checks: Sequence[PreflightCheck],
    *,
    section: str = "engines",
    echo: Callable[[str], None] = print,
    **engine_options: object,
) -> list[ChatResult]:
    """Make every check call; return the results; raise :class:`PreflightError` if any engine failed."""
    results: list[ChatResult] = []
    problems: list[str] = []
    by_engine: dict[str, list[PreflightCheck]] = {}
    for check in checks:
        by_engine.setdefault(check.engine_name, []).append(check)
    for engine_checks in by_engine.values():
        # Checked online even for batch engines: one call must not wait for a batch window.
        cfg = engine_checks[0].engine
        if getattr(cfg, "batch", None) is not None:
            cfg = cfg.model_copy(update={"batch": None})
        options = engine_options if cfg.is_http else {}
        with create_engine(cfg, **options) as engine:
            out = engine.chat_batch([c.request for c in engine_checks])
        for check, result in zip(engine_checks, out, strict=True):
            results.append(result)
            problem = diagnose(check, result, section)
            if problem is not None:
                problems.append(problem)
            else:
                adapted = f" (sent with {', '.join(result.adaptations)})" if result.adaptations else ""
                echo(f"preflight ok: {check.engine_name} {check.label}{adapted}".rstrip())
    if problems:
        raise PreflightError("preflight failed, nothing paid was started:\n  " + "\n  ".join(problems))
    return results
