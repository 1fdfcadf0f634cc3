#!/usr/bin/env bash
# The flan-t5-dialogsum preset at full size on a CUDA GPU, and the legacy trainer beside it.
#
#   benchmarks/gpu.sh            # from the project root, after `make install TORCH_SPEC=torch` (a CUDA torch)
#
# 1. benchmarks/gpu_run.py preset: the preset's stages (prepare, ppo, eval, report) on full-size stand-ins
#    of FLAN-T5-base and Meta's judge (`detoxrl standin`, written once into $STANDINS; random weights,
#    meaningless outputs) and DialogSum's local files, on CUDA, with $GPU_PPO_STEPS PPO steps and
#    $GPU_EVAL_PROMPTS eval prompts: PPO seconds per step, generation tokens/s, peak
#    torch.cuda.max_memory_allocated.
# 2. benchmarks/ppo_vs_trl_legacy.py --size flan-t5-base-lora: the recipe's fixed workload on the same GPU,
#    detoxrl against TRL 0.11.4 (whose .bench-venv the harness creates with pip; when that fails, or takes
#    longer than $GPU_LEGACY_TIMEOUT seconds, the summary says so and the script still succeeds).
# 3. One summary line (benchmarks/gpu_run.py summary); every figure is in $GPU_OUT (gpu.json,
#    bench-flan-t5-base-lora.json, gpu.log).
#
# Budget: a few minutes on a recent GPU (stand-ins ~1 min on the CPU the first time, the preset ~1-2 min,
# the legacy comparison ~1-2 min plus the legacy venv's first install); well under ten.
#
# Exit status: 0 done; 3 no CUDA device visible to torch (nothing is run, one message on stderr);
# 2 no usable python (torch not importable); anything else: the preset run failed (see $GPU_OUT/gpu.log).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3 || true)"
GPU_OUT="${GPU_OUT:-$ROOT/runs/gpu}"
STANDINS="${STANDINS:-$ROOT/runs/standins}"
DIALOGSUM="${DIALOGSUM:-$ROOT/../shared/data/dialogsum}"
GPU_PPO_STEPS="${GPU_PPO_STEPS:-4}"
GPU_EVAL_PROMPTS="${GPU_EVAL_PROMPTS:-16}"
GPU_LEGACY_TIMEOUT="${GPU_LEGACY_TIMEOUT:-420}"

# One python start: torch's version, and whether it sees CUDA (status 3 if not, 2 if torch is missing).
torch_version="$("$PYTHON" -c '
import sys
try:
    import torch
except ImportError:
    sys.exit(2)
print(torch.__version__)
sys.exit(0 if torch.cuda.is_available() else 3)' 2>/dev/null)"
probe=$?
if [ "$probe" -ne 0 ] && [ "$probe" -ne 3 ]; then  # 2: no torch; 127: no python
    echo "gpu.sh: no python with torch (set PYTHON, or run 'make install' first)" >&2
    exit 2
fi
if [ "$probe" -eq 3 ]; then
    echo "gpu.sh: no CUDA device: torch $torch_version sees none (torch.cuda.is_available() is False);" \
         "nothing was run. This script measures the preset on a GPU; on a CPU use 'make bench' and" \
         "'make fullsize'." >&2
    exit 3
fi

mkdir -p "$GPU_OUT"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" DETOXRL_NO_PROGRESS=1 TOKENIZERS_PARALLELISM=false
cd "$ROOT" || exit 2

echo "gpu.sh: the preset on $("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0))'), log in $GPU_OUT/gpu.log"
"$PYTHON" benchmarks/gpu_run.py preset --standins "$STANDINS" --data "$DIALOGSUM" --out "$GPU_OUT" \
    --steps "$GPU_PPO_STEPS" --eval-prompts "$GPU_EVAL_PROMPTS" >"$GPU_OUT/gpu.log" 2>&1
status=$?
if [ "$status" -ne 0 ]; then
    echo "gpu.sh: the preset run failed (exit $status); the end of $GPU_OUT/gpu.log:" >&2
    tail -n 30 "$GPU_OUT/gpu.log" >&2
    exit "$status"
fi

echo "gpu.sh: the recipe's workload against TRL 0.11.4 (log in $GPU_OUT/bench.log)"
rm -f "$GPU_OUT/bench-flan-t5-base-lora.json"
timeout "$GPU_LEGACY_TIMEOUT" "$PYTHON" benchmarks/ppo_vs_trl_legacy.py --size flan-t5-base-lora --precision auto \
    --repeats 1 --steps 3 --warmup 1 --json-out "$GPU_OUT/bench-flan-t5-base-lora.json" >"$GPU_OUT/bench.log" 2>&1 \
    || echo "gpu.sh: the legacy comparison did not finish (exit $?; see $GPU_OUT/bench.log); the preset's figures stand" >&2

"$PYTHON" benchmarks/gpu_run.py summary --out "$GPU_OUT"
