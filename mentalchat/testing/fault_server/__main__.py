"""``python -m mentalchat.testing.fault_server``: serve from a shell (benchmarks, manual checks).

Why a CLI: the throughput benchmarks run the server in its own process so that its work does not
share the benchmarked client's event loop or GIL. It prints one line when listening,
``fault server listening on http://HOST:PORT (OpenAI base URL http://HOST:PORT/v1)``, which
``benchmarks/judge_throughput.py`` parses; keep that line as it is.

Example::

    python -m mentalchat.testing.fault_server --port 8765 --rps 20 --latency-ms 50 --fault 503=0.05
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

from mentalchat.testing.fault_server.batch_jobs import BatchSettings
from mentalchat.testing.fault_server.faults import _parse_fault_rates
from mentalchat.testing.fault_server.provider_rules import ProviderRules
from mentalchat.testing.fault_server.schema_fill import PAIRWISE_RULES
from mentalchat.testing.fault_server.server import FaultServer


def main(argv: list[str] | None = None) -> None:
    """Parse the options, serve until interrupted."""
    # prog: the usage line reads as it did when the server was one module (not "__main__.py").
    ap = argparse.ArgumentParser(
        prog="fault_server.py", description="Local OpenAI/Gemini REST server with injectable faults."
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--rpm", type=float, default=None, help="rate limit, requests per minute")
    ap.add_argument("--rps", type=float, default=None, help="rate limit, requests per second")
    ap.add_argument("--burst", type=float, default=None, help="rate-limit bucket size (requests)")
    ap.add_argument("--tpm", type=float, default=None, help="tokens-per-minute limit (prompt chars/4 + max_tokens)")
    ap.add_argument("--latency-sigma", type=float, default=0.0, help="lognormal latency: sigma (latency-ms is the median)")
    ap.add_argument("--fault", action="append", default=[], metavar="KIND=P", help="random fault, e.g. 503=0.05, timeout=0.01")
    ap.add_argument("--default-fault", default=None, help="fault for every call, e.g. 500")
    ap.add_argument("--api-key-env", default=None, help="require the key held by this env variable")
    ap.add_argument("--models", default=None, help="comma-separated model names to accept")
    ap.add_argument("--real-rules", action="store_true",
                    help="refuse what the real APIs refuse (capability errors, real key-error bodies)")
    ap.add_argument("--retired", action="store_true", help="with --real-rules: 404 for models the providers shut down")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-validate-s", type=float, default=0.05, help="batch jobs: seconds validating")
    ap.add_argument("--batch-process-s", type=float, default=0.2, help="batch jobs: seconds in progress")
    ap.add_argument("--batch-finalize-s", type=float, default=0.05, help="batch jobs: seconds finalizing")
    ap.add_argument("--batch-expire-s", type=float, default=None, help="batch jobs expire after this many seconds")
    ap.add_argument("--batch-item-fault", action="append", default=[], metavar="KIND=P",
                    help="random fault of a batch line, e.g. 500=0.05")
    ap.add_argument("--pairwise", choices=PAIRWISE_RULES, default=None,
                    help="verdicts on pairwise judge prompts: first / second (a position-biased judge), content (consistent)")
    args = ap.parse_args(argv)

    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    srv = FaultServer(
        host=args.host,
        port=args.port,
        latency_s=args.latency_ms / 1000,
        jitter_s=args.jitter_ms / 1000,
        latency_sigma=args.latency_sigma,
        tpm=args.tpm,
        rpm=args.rpm,
        rps=args.rps,
        burst=args.burst,
        default_fault=args.default_fault,
        fault_rates=_parse_fault_rates(args.fault),
        api_key=api_key,
        models=args.models.split(",") if args.models else None,
        rules=ProviderRules(retirements=args.retired) if args.real_rules else None,
        seed=args.seed,
        batch=BatchSettings(validate_s=args.batch_validate_s, process_s=args.batch_process_s,
                            finalize_s=args.batch_finalize_s, expire_after_s=args.batch_expire_s,
                            item_fault_rates=_parse_fault_rates(args.batch_item_fault), seed=args.seed),
        pairwise=args.pairwise,
    )

    async def run() -> None:
        task = asyncio.create_task(srv.serve_forever())
        while not srv._started.is_set():
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        print(f"fault server listening on {srv.base_url} (OpenAI base URL {srv.openai_base_url})", flush=True)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
