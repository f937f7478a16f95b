#!/usr/bin/env bash
# The GPU check: one command, at most 8 minutes on one H100/H200, figures into $OUT (or
# benchmarks/results/gpu-<date>/).
#
#   1. QLoRA on a random Mistral-7B shape, the paper's recipe against our best settings
#      (benchmarks/gpu_qlora.py --steps 4 --steps-b 8 --warmup 1: trained tokens/s, MFU, peak memory, ratio b/a); capped at 290 s.
#   2. Answer generation with vLLM on the same shape, random weights (load_format=dummy): the base
#      and three rank-16 adapters, 200 questions each, in one multi-LoRA engine against one engine
#      per model in turn, then Ray Data replicas against a bare vllm.LLM
#      (benchmarks/generate_throughput.py --dummy-7b; 5 engine starts and Ray's); capped at 180 s. Needs vllm (and ray) on the
#      machine: the vllm wheel (~400 MB) is bigger than what the device tool carries (64 MiB), so
#      where vllm is missing this part is skipped and says so.
#
# No internet on the GPU machine: fetch the wheels here first (bash benchmarks/gpu_wheels.sh, into
# .whl/), then, with the device tool:
#
#   run(carry=[".whl"], timeout_s=560, command="bash benchmarks/gpu_check.sh")
#
# A part that fails or runs out of time leaves its log beside the others; the script goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu-$(date -u +%Y-%m-%d)}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$OUT/gpu.txt"

start=$(date +%s)
timeout 290 python3 benchmarks/gpu_qlora.py --steps 4 --steps-b 8 --warmup 1 --out "$OUT/gpu_qlora.json" >"$OUT/gpu_qlora.log" 2>&1
echo "gpu_qlora: exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"

start=$(date +%s)
if python3 -c 'import vllm, ray' 2>/dev/null; then
  timeout 180 python3 benchmarks/generate_throughput.py --dummy-7b --out "$OUT/generate_throughput.json" \
    >"$OUT/generate_throughput.log" 2>&1
  echo "generate_throughput: exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
else
  echo "generate_throughput: skipped, vllm or ray is not importable on this machine" | tee -a "$OUT/gpu.txt"
fi
tail -n 30 "$OUT"/*.log
