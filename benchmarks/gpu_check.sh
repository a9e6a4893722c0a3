#!/usr/bin/env bash
# kshot on a GPU in one run (about 9 minutes on an H200): writes at most 8 files to OUT.
#
#   benchmarks/gpu_check.sh OUT [ARSC_DIR]        (ARSC_DIR: ../shared/data/arsc by default)
#
# 1. the CUDA tests (pytest -m cuda: tests/cuda), ~1 min;
# 2. meta-training throughput and memory on ARSC episodes of the main job's shape, float32 and bf16
#    (benchmarks/gpu_throughput.py), ~2.5 min;
# 3. the ARSC main recipe (configs/arsc/anil.yaml, mixed_precision auto: bf16 on the GPU) with 50x its 400 outer
#    steps, or as many as ANIL's measured bf16 rate fits in the time left (at most KSHOT_GPU_TRAIN_SECONDS, 240),
#    scored on the 12 targets; ~4 min;
# 4. that model's feature ceiling (benchmarks/feature_ceiling.py), ~1 min.
# Each part runs under its own time limit, the whole within KSHOT_GPU_DEADLINE seconds (530), and the next part
# runs even if one fails. PYTHON picks the
# interpreter (python3). The CPU's figures for the same episodes come from the same script:
#   .venv/bin/python benchmarks/gpu_throughput.py --device cpu --seconds 30 --json cpu.json
set -u
out=${1:?usage: benchmarks/gpu_check.sh OUT [ARSC_DIR]}
data=$(realpath "${2:-../shared/data/arsc}")
py=${PYTHON:-python3}
max_train_seconds=${KSHOT_GPU_TRAIN_SECONDS:-240}
deadline=${KSHOT_GPU_DEADLINE:-530}
left() { echo $((deadline - SECONDS)); }
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
timeout 120 $py -m pytest -m cuda -p no:cacheprovider -q -o addopts="" -rs tests/cuda > "$out/cuda_tests.log" 2>&1
log "   rc=$? $(tail -1 "$out/cuda_tests.log")"

log "2. throughput and memory"
# KSHOT_GPU_THROUGHPUT_ARGS: extra words for a dry run on a CPU (--algorithms anil --seconds 0 ...)
timeout 200 $py benchmarks/gpu_throughput.py --data "$data" --seconds 5 --json "$out/throughput.json" \
  ${KSHOT_GPU_THROUGHPUT_ARGS:-} > "$out/throughput.log" 2>&1
log "   rc=$?"

# Outer steps: 20,000, or what ANIL's bf16 rate (just measured) fits in the time left, in hundreds; kept back:
# ~90 s for the run's start and its 12 target tasks, ~80 s for the feature ceiling.
train_seconds=$(( $(left) - 170 < max_train_seconds ? $(left) - 170 : max_train_seconds ))
steps=${KSHOT_GPU_STEPS:-$($py - "$out/throughput.json" "$train_seconds" <<'EOF'
import json, sys
try:
    rate = json.load(open(sys.argv[1]))["runs"]["anil/bf16"]["episodes_per_s"]
except (OSError, KeyError, ValueError):
    rate = 10.0
print(max(400, min(20000, int(rate * float(sys.argv[2])) // 100 * 100)))
EOF
)}
log "3. ARSC main recipe with $steps outer steps (${train_seconds} s of training at the measured rate)"
model="$work/arsc-gpu"
timeout $(( $(left) - 60 )) $py -m kshot train -c "$work/config.yaml" -p configs/arsc/anil.yaml --no-track \
  --set params.meta_steps="$steps" --set config.output_dir="$model" --set config.logging.progress_bar=false \
  > "$out/train.log" 2>&1
log "   rc=$?"
cp "$model/kshot.json" "$out/train_model_meta.json" 2>/dev/null || log "   no $model/kshot.json"

log "4. feature ceiling"
timeout $(( $(left) > 30 ? $(left) : 30 )) $py benchmarks/feature_ceiling.py "$model" -c "$work/config.yaml" \
  --json "$out/ceiling.json" \
  > "$out/ceiling.log" 2>&1
log "   rc=$?"
log "done"
