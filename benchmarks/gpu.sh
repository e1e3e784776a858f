#!/usr/bin/env bash
# The GPU benchmark: training-step and inference throughput, JAX against PyTorch on the same
# card, for ghostnet_100, repghostnet_100 and g_ghost_regnetx_032 at batch 128, fp32 and bf16.
# PyTorch runs channels-last with bfloat16 autocast for bf16 (its AMP); both sides get a
# model-FLOPs utilisation (MFU) from the MAC counter and the card's dense peak.
# Needs jax[cuda] and a CUDA build of torch in the active environment (plus this repo's
# requirements and timm). Results go to $GPU_RESULTS (default benchmarks/results/gpu/*.json);
# paste the printed tables, the card (nvidia-smi) and the date into docs/benchmarks.md.
#   bash benchmarks/gpu.sh
#   GPU_MODELS=ghostnetv2_100 GPU_BATCH=256 bash benchmarks/gpu.sh
#   GPU_EXTRA=--torch-compile bash benchmarks/gpu.sh      # also torch.compile (minutes per model)
# About 10 minutes on one H100 for the defaults, mostly XLA compiles (docs/benchmarks.md, GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} XLA_PYTHON_CLIENT_PREALLOCATE=false
MODELS=${GPU_MODELS:-ghostnet_100,repghostnet_100,g_ghost_regnetx_032}
BATCH=${GPU_BATCH:-128}
RESULTS=${GPU_RESULTS:-benchmarks/results/gpu}
TIMING=${GPU_TIMING:---min-time 0.5 --repeats 3}
EXTRA=${GPU_EXTRA:-}
mkdir -p "$RESULTS"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$RESULTS/card.txt"
date -u | tee -a "$RESULTS/card.txt"
python -c "import jax, torch; assert jax.default_backend() == 'gpu', jax.devices(); \
assert torch.cuda.is_available(); print(jax.__version__, jax.devices(), torch.__version__)" \
  | tee -a "$RESULTS/card.txt"
# Training first (the step the trainer jits, recipe features on), then inference.
for dtype in bfloat16 float32; do
  python benchmarks/train_step.py --models "$MODELS" --torch-models all --batch "$BATCH" \
    --dtype "$dtype" $TIMING $EXTRA --json "$RESULTS/train_step_$dtype.json"
done
for dtype in bfloat16 float32; do
  python benchmarks/inference.py --models "$MODELS" --batch "$BATCH" --dtype "$dtype" \
    $TIMING $EXTRA --json "$RESULTS/inference_$dtype.json"
done
