#!/usr/bin/env bash
# Fetch, on this (CPU) machine, the wheels benchmarks/gpu_qlora.py needs on the GPU machine, whose
# image has torch and accelerate but not these (its transformers/peft are older than this project's:
# they are carried too, at the versions the CPU environment runs). They land in .whl/ (ignored by
# git, ~58 MiB: with the repository, just under the device tool's 64 MiB working-tree limit; set
# MINIMAL=1 to leave transformers and peft out). Then, with the device tool:
#
#   run(carry=[".whl"], timeout_s=560, command=
#     "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site
#      .whl/*.whl && export PYTHONPATH=/tmp/site || exit; PYTHONUNBUFFERED=1 python3 benchmarks/gpu_qlora.py
#      --out $OUT/gpu_qlora.json 2>&1 | tee $OUT/gpu_qlora.log")
#
# Versions are the ones this project's CPU environment runs (pyproject's cpu/gpu extras).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl \
  bitsandbytes==0.50.2 trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  $([ "${MINIMAL:-0}" = 1 ] || echo transformers==5.19.0 peft==0.21.2)
du -sh .whl
