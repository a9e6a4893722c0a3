#!/usr/bin/env bash
# kshot on a GPU in one run (about 9 minutes on an H200): writes at most 8 files to OUT.
#
#   benchmarks/gpu_check.sh OUT [ARSC_DIR]        (ARSC_DIR: ../shared/data/arsc by default)
#
# 1. the CUDA tests (pytest -m cuda: tests/cuda), ~1 min;
# 2. meta-training throughput and memory on ARSC episodes of the main job's shape, float32 and bf16
#    (benchmarks/gpu_throughput.py), ~2.5 min;
# 3. the ARSC main recipe (configs/arsc/anil.yaml, mixed_precision auto: bf16 on the GPU) with 50x its 400 outer
#    steps, or as many as ANIL's measured bf16 rate fits in KSHOT_GPU_TRAIN_SECONDS (240), scored on the 12
#    targets; ~4.5 min;
# 4. that model's feature ceiling (benchmarks/feature_ceiling.py), ~1 min.
# Each part runs under its own time limit, and the next one runs even if one fails. PYTHON picks the
# interpreter (python3). The CPU's figures for the same episodes come from the same script:
#   .venv/bin/python benchmarks/gpu_throughput.py --device cpu --seconds 30 --json cpu.json
set -u
out=${1:?usage: benchmarks/gpu_check.sh OUT [ARSC_DIR]}
data=$(realpath "${2:-../shared/data/arsc}")
py=${PYTHON:-python3}
train_seconds=${KSHOT_GPU_TRAIN_SECONDS:-240}
work=$(mktemp -d)
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
summary="$out/summary.txt"
log() { echo "[$(date +%T)] $*" | tee -a "$summary"; }

log "start: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
$py -c 'import torch, transformers, accelerate, datasets
print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__,
      "accelerate", accelerate.__version__, "datasets", datasets.__version__)' 2>&1 | tee -a "$summary"
# The main job's config with the data folder given here; its logs stay out of OUT.
sed -e "s#^  path: .*#  path: $data#" -e "s#^  log_dir: .*#  log_dir: $work/logs#" configs/arsc/config.yaml \
  > "$work/config.yaml"

log "1. CUDA tests"
timeout 180 $py -m pytest -m cuda -p no:cacheprovider -q -o addopts="" -rs tests/cuda > "$out/cuda_tests.log" 2>&1
log "   rc=$? $(tail -1 "$out/cuda_tests.log")"

log "2. throughput and memory"
timeout 240 $py benchmarks/gpu_throughput.py --data "$data" --json "$out/throughput.json" > "$out/throughput.log" 2>&1
log "   rc=$?"

# Outer steps: 20,000, or what ANIL's bf16 rate (just measured) fits in the time given, in hundreds.
steps=$($py - "$out/throughput.json" "$train_seconds" <<'EOF'
import json, sys
try:
    rate = json.load(open(sys.argv[1]))["runs"]["anil/bf16"]["episodes_per_s"]
except (OSError, KeyError, ValueError):
    rate = 10.0
print(max(400, min(20000, int(rate * float(sys.argv[2])) // 100 * 100)))
EOF
)
log "3. ARSC main recipe with $steps outer steps"
model="$work/arsc-gpu"
timeout $((train_seconds + 180)) $py -m kshot train -c "$work/config.yaml" -p configs/arsc/anil.yaml --no-track \
  --set params.meta_steps="$steps" --set config.output_dir="$model" --set config.logging.progress_bar=false \
  > "$out/train.log" 2>&1
log "   rc=$?"
cp "$model/kshot.json" "$out/train_model_meta.json" 2>/dev/null || log "   no $model/kshot.json"

log "4. feature ceiling"
timeout 150 $py benchmarks/feature_ceiling.py "$model" -c "$work/config.yaml" --json "$out/ceiling.json" \
  > "$out/ceiling.log" 2>&1
log "   rc=$?"
log "done"
