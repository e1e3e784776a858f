"""Training input pipeline throughput alone (no model): is data or compute the bottleneck?

  PYTHONPATH=. python benchmarks/input_pipeline.py --batch 32
  PYTHONPATH=. python benchmarks/input_pipeline.py --aa none,rand-m9-mstd0.5 --reprob 0.25

Times the ImageNet training pipeline of ``benchmarks/input_pipeline_augment.py`` (``tf.data``
over locally made JPEGs of ImageNet-like size: Inception crop decoding only the crop, bilinear
resize, flip, optional AutoAugment/RandAugment (``--aa``, timm strings; ``none`` for the plain
pipeline) and random erasing, normalise, batch, prefetch; each batch converted to numpy as a
trainer consumes it) on this machine's CPUs, every configuration in turn, median of rounds.
If ``--train-step-json`` exists (written by ``benchmarks/train_step.py``), each configuration is
set against each model's training-step rate: below it, the accelerator waits for data.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.input_pipeline_augment import make_jpegs, measure  # noqa: E402
from ghostnets_jax import timing as bm  # noqa: E402


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--aa', default='none,rand-m9-mstd0.5',
                 help="comma-separated augmentation strings ('none': crop, flip, normalise only)")
  p.add_argument('--reprob', type=float, default=0., help='random-erasing probability (all configs)')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--images', type=int, default=64, help='distinct JPEGs cycled through')
  p.add_argument('--steps', type=int, default=10, help='timed batches per config per round')
  p.add_argument('--rounds', type=int, default=3, help='configs take turns this often (median)')
  p.add_argument('--train-step-json', default='benchmarks/results/train_step.json')
  p.add_argument('--json', default='benchmarks/results/input_pipeline.json')
  return p.parse_args(argv)


def verdicts(rows: list[dict], steps: list[dict]) -> list[str]:
  """One line per (pipeline config, model): does the pipeline keep up with the training step?"""
  out = []
  for r in rows:
    for s in steps:
      need = s['jax_img_s']
      verdict = 'compute-bound' if r['img_s'] >= need else 'input-bound'
      out.append(f'{r["config"]} vs {s["model"]} train step (batch {s["batch"]}, {need:.1f} img/s): '
                 f'pipeline feeds {r["img_s"] / need:.2f}x -> {verdict}')
  return out


def main(argv: Optional[list[str]] = None) -> list[dict]:
  a = parse_args(argv)
  info = bm.machine()
  print(bm.describe(info), flush=True)
  configs = {f'{aa}' + (f' + erasing {a.reprob}' if a.reprob else ''):
             (None if aa == 'none' else aa, a.reprob) for aa in a.aa.split(',')}
  jpegs = make_jpegs(a.images)
  kib = sum(map(len, jpegs)) / len(jpegs) / 1024
  result = measure(configs, jpegs, batch_size=a.batch, steps=a.steps, rounds=a.rounds)
  rows = [{'config': name, 'batch': a.batch, 'size': 224, 'mean_jpeg_kib': kib, 'img_s': ips}
          for name, ips in result.items()]
  print(f'| pipeline (224x224, batch {a.batch}, JPEGs of {kib:.0f} KiB) | img/s |\n|---|---:|')
  for r in rows:
    print(f'| {r["config"]} | {r["img_s"]:.1f} |')
  if os.path.exists(a.train_step_json):
    with open(a.train_step_json) as f:
      print('\n'.join(verdicts(rows, json.load(f)['rows'])))
  bm.write_json(a.json, info, vars(a), rows)
  return rows


if __name__ == '__main__':
  main()
