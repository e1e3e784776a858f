#!/usr/bin/env bash
# The GPU benchmark: inference and training-step throughput, JAX against PyTorch on the same
# card, for ghostnet_100, repghostnet_100 and g_ghost_regnetx_032 at batch 128, fp32 and bf16.
# Needs jax[cuda] and a CUDA build of torch 2.14.1 in the active environment. Results go to
# benchmarks/results/gpu/*.json; paste the printed tables, the card (nvidia-smi) and the date into
# docs/benchmarks.md.
#   bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=. XLA_PYTHON_CLIENT_PREALLOCATE=false
MODELS=ghostnet_100,repghostnet_100,g_ghost_regnetx_032
OUT=benchmarks/results/gpu
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/card.txt"
date -u | tee -a "$OUT/card.txt"
python -c "import jax; assert jax.default_backend() == 'gpu', jax.devices(); print(jax.devices())"
for dtype in float32 bfloat16; do
  python benchmarks/inference.py --models "$MODELS" --batch 128 --dtype "$dtype" \
    --min-time 1 --repeats 5 --json "$OUT/inference_$dtype.json"
  python benchmarks/train_step.py --models "$MODELS" --torch-models all --batch 128 \
    --dtype "$dtype" --min-time 1 --repeats 5 --json "$OUT/train_step_$dtype.json"
done
