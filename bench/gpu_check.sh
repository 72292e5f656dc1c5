#!/usr/bin/env bash
# Issue #18's measurements on a CUDA machine, in ONE call; every result lands under $OUT.
#
# From the repository root of a session that has a GPU:
#   1. here:            bash bench/gpu_prepare.sh        (fills the git-ignored .gpu/)
#   2. device tool:     run(command="bash bench/gpu_check.sh", carry=[".gpu"], timeout_s=560)
# On any CUDA machine with the project's venv: OUT=bench-results/gpu bash bench/gpu_check.sh
#
# Steps (each under its own time limit, so one that hangs cannot eat the others' time):
#   tests     float64 statistics exact on cuda, the decoding pipeline (pinned batches, same
#             model and scores as sequential decoding), partial_fit on cuda
#   speed     python -m bench --devices cuda --cases speed: predict and fit vs the backbone,
#             reference settings (Lite0, d = 100: the issue's "default"), decoded images
#   profile   python -m bench.device_profile: each engine step's CPU and kernel time in
#             predict and fit, top kernels, host<->device copies and synchronisations
#   wrn2000   Wide-ResNet-50 (random weights) d = 550 fit on 2000 image files, peak GPU memory
#   files     python -m bench.decoding --devices cuda: from files vs the backbone (>= 70 %)
#   cli       padim fit / padim predict end to end on the folder (wall time)
# Then docs/gpu.md says where each figure goes. Data: $DATA if set, else .gpu/data if it
# holds an MVTec category, else a synthetic 256² demo set written here (PNG, as MVTec's).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-results/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
export PYTHONPATH="$PWD:$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# glibc malloc settings of `make run` (padim_core.allocator.ENVIRONMENT)
export MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824
LOG="$OUT/gpu_check.log"
: > "$LOG"

step() {  # step NAME SECONDS COMMAND...: run it, log it, note its exit status
    local name=$1 limit=$2; shift 2
    echo "== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee -a "$LOG"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$LOG"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  "$PY" -c "import torch, sys; print(sys.version.split()[0], torch.__version__,
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO CUDA')"
  nproc; } 2>&1 | tee -a "$LOG"

if [ -z "${DATA:-}" ]; then
    DATA=$(ls -d .gpu/data/*/ 2>/dev/null | head -1)
    DATA=${DATA%/}
fi
if [ -z "$DATA" ] || [ ! -d "$DATA/train/good" ]; then
    DATA=/tmp/padim-gpu-check/plates
    rm -rf "$DATA"
    step data 120 "$PY" -c "from pathlib import Path; from padim_core.demo import make_demo_set
make_demo_set(Path('$DATA'), n_train=213, n_test_good=40, n_test_defect=60, size=256, seed=0)"
fi
echo "data: $DATA" | tee -a "$LOG"

DEVICE=${DEVICE:-cuda}                 # DEVICE=cpu SMOKE=1: a dry run of this script's steps
SMOKE_FLAG=${SMOKE:+--smoke}
WRN_N=${WRN_N:-200} WRN_REPEAT=${WRN_REPEAT:-10} WRN_BACKBONE=${WRN_BACKBONE:-wide_resnet50_2} WRN_D=${WRN_D:-550}
step tests 150 "$PY" -m pytest -q -p no:cacheprovider -o addopts= \
    tests/test_device_statistics.py tests/test_loading.py "tests/test_partial_fit.py::test_update_on_each_device"
step speed 150 "$PY" -m bench --devices "$DEVICE" --cases speed --data "$DATA" $SMOKE_FLAG \
    --json "$OUT/bench_speed_$DEVICE.json"
step profile 90 "$PY" -m bench.device_profile --device "$DEVICE" --data "$DATA" $SMOKE_FLAG \
    --json "$OUT/device_profile_$DEVICE.json"
step wrn2000 150 sh -c "'$PY' -m bench.memory --mode fit --data '$DATA' --n $WRN_N \
    --repeat $WRN_REPEAT --backbone $WRN_BACKBONE --weights random --d $WRN_D --device $DEVICE \
    --predict-n 32 > '$OUT/wrn550_fit2000_$DEVICE.json' && cat '$OUT/wrn550_fit2000_$DEVICE.json'"
step files 120 "$PY" -m bench.decoding --devices "$DEVICE" --data "$DATA" $SMOKE_FLAG \
    --json "$OUT/decoding_$DEVICE.json"
step cli 90 "$PY" -c "
import subprocess, sys, time
from pathlib import Path
work = '/tmp/padim-gpu-check'
tests = sorted(str(p) for p in Path('$DATA/test').iterdir() if p.is_dir())
runs = {'fit': ['fit', '$DATA', '-o', work + '/model.safetensors'],
        'predict': ['predict', work + '/model.safetensors', *tests, '--out', work + '/pred']}
for name, args in runs.items():
    t0 = time.perf_counter()
    subprocess.run([sys.executable, '-m', 'padim_core', *args, '--device', '$DEVICE',
                    '--no-progress'], check=True, stdout=subprocess.DEVNULL)
    print(f'padim {name} (whole command, from files): {time.perf_counter() - t0:.2f} s')
"
echo "done $(date -u +%H:%M:%S)" | tee -a "$LOG"
