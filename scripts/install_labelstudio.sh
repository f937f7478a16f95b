#!/usr/bin/env bash
# The human-study test rig (idempotent): Label Studio in .venv-labelstudio, Chromium from Debian.
# Label Studio pins Django and friends that do not fit our venv, so it gets its own; the tests
# start it from there (tests/human_study/conftest.py). Chromium: Debian's package, driven by
# Playwright with executable_path=/usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
LS_VERSION=${LS_VERSION:-1.23.2}
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x .venv-labelstudio/bin/label-studio ] || \
   ! .venv-labelstudio/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('label-studio') != '$LS_VERSION')"; then
  "$PYTHON" -m venv .venv-labelstudio
  .venv-labelstudio/bin/python -m pip install -q "label-studio==$LS_VERSION" 2>&1 | grep -v '^WARNING: Location' || true
fi
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1) || \
      (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null)
  else
    echo "install_labelstudio: chromium is missing; install Debian's 'chromium' package (the browser tests need it)" >&2
  fi
fi
echo "human-study rig ok: label-studio $(.venv-labelstudio/bin/python -c 'import importlib.metadata as m; print(m.version("label-studio"))'), $(chromium --version 2>/dev/null || echo 'no chromium')"
