"""Dense and grouped 3x3 convolutions, XLA against PyTorch, at the shapes of the families whose
training step on CPU depends on them.

  PYTHONPATH=. python benchmarks/conv_peers.py --threads 1
  PYTHONPATH=. python benchmarks/conv_peers.py --families regnet --batch 32 --json out.json

G-GhostNet on RegNetX (g_ghost_regnetx_032: 3x3 convolutions in groups of 48 channels), and the
ResNet-style bodies of GhostNets_D and MultiGrain (dense 3x3): each 3x3 convolution of a stage, at
its stride, as the layer computes it (``ghostnets_jax.layers.grouped_conv2d`` with the backend's
kernel choice: one dense convolution per group on CPU) and as PyTorch's ``F.conv2d`` (oneDNN on
CPU; NCHW, as ``benchmarks/train_step.py``'s eager PyTorch step). Two measurements per shape, both
sides interleaved in one process (median of rounds): the forward alone and forward + backward (the
gradients of ``sum(y * r)`` for the input and the kernel, what a training step computes). Prints
ms per call, PyTorch / XLA (above 1: XLA is faster) and the largest output difference.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ghostnets_jax import timing as bm  # noqa: E402

# The models each family stands for.
MODELS = {'regnet': 'g_ghost_regnetx_032', 'resnet': 'resnet (GhostNets_D, MultiGrain)'}
# (spatial size of the input, channels, groups, stride): the 3x3 convolutions of each stage (the
# first block's, strided, and the rest's) at 224 input.
SHAPES = {
    'regnet': ((112, 96, 2, 2), (56, 96, 2, 1), (56, 192, 4, 2), (28, 192, 4, 1), (28, 432, 9, 2),
               (14, 432, 9, 1), (14, 1008, 21, 2), (7, 1008, 21, 1)),
    'resnet': ((56, 64, 1, 1), (56, 128, 1, 2), (28, 128, 1, 1), (28, 256, 1, 2), (14, 256, 1, 1),
               (14, 512, 1, 2), (7, 512, 1, 1)),
}


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--families', default='regnet,resnet', help=f'comma-separated, of {sorted(SHAPES)}')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--scale', type=int, default=1,
                 help='divide every spatial size by this (quick checks; 1 = the real shapes)')
  bm.add_timing_args(p)
  p.add_argument('--json', default='benchmarks/results/conv_peers.json')
  a = p.parse_args(argv)
  unknown = [f for f in a.families.split(',') if f not in SHAPES]
  if unknown:
    p.error(f'--families: unknown {unknown}; choose from {sorted(SHAPES)}')
  if a.scale < 1:
    p.error(f'--scale must be a positive integer, got {a.scale}')
  return a


def jax_calls(x, w, r, stride, groups):
  """(forward, forward + backward) of the layer's convolution, compiled."""
  import jax
  import jax.numpy as jnp

  from ghostnets_jax.layers import grouped_conv2d, torch_padding

  def conv(x, w):
    return grouped_conv2d(x, w, stride, torch_padding(3), groups=groups)

  def grads(x, w):
    return jax.grad(lambda x, w: jnp.sum(conv(x, w) * r), argnums=(0, 1))(x, w)
  return bm.compile_jit(conv, x, w)[0], bm.compile_jit(grads, x, w)[0]


def torch_calls(x, w, r, stride, groups):
  """(forward, forward + backward) of ``F.conv2d`` on NCHW copies of the same arrays."""
  import numpy as np
  import torch
  import torch.nn.functional as F
  tx = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).requires_grad_()
  tw = torch.from_numpy(np.asarray(w).transpose(3, 2, 0, 1).copy()).requires_grad_()
  tr = torch.from_numpy(np.asarray(r).transpose(0, 3, 1, 2).copy())

  def forward():
    with torch.no_grad():
      return F.conv2d(tx, tw, None, stride, 1, 1, groups)

  def backward():
    return torch.autograd.grad((F.conv2d(tx, tw, None, stride, 1, 1, groups) * tr).sum(), (tx, tw))
  return forward, backward


def main(argv: Optional[list[str]] = None) -> list[dict]:
  a = parse_args(argv)
  bm.prepare_process(a.threads, a.host_memory)
  import jax.numpy as jnp
  import numpy as np
  import torch
  if a.threads:
    torch.set_num_threads(a.threads)
  info = bm.machine()
  print(bm.describe(info), flush=True)
  print('| family | input (NHWC) | groups, stride | XLA fwd (ms) | PyTorch fwd (ms) | PyTorch / XLA fwd '
        '| XLA fwd+bwd (ms) | PyTorch fwd+bwd (ms) | PyTorch / XLA fwd+bwd | max diff |\n'
        '|---|---|---|---:|---:|---:|---:|---:|---:|---:|')
  rows = []
  for family in a.families.split(','):
    model = MODELS[family]
    for hw, c, groups, stride in SHAPES[family]:
      hw = max(hw // a.scale, stride)
      rng = np.random.RandomState(0)
      x = jnp.asarray(rng.randn(a.batch, hw, hw, c), jnp.float32)
      w = jnp.asarray(rng.randn(3, 3, c // groups, c) / np.sqrt(9 * c // groups), jnp.float32)
      ho = (hw - 1) // stride + 1
      r = jnp.asarray(rng.randn(a.batch, ho, ho, c), jnp.float32)
      j_fwd, j_bwd = jax_calls(x, w, r, stride, groups)
      t_fwd, t_bwd = torch_calls(x, w, r, stride, groups)
      s = bm.time_calls({'jax_fwd': bm.blocking(j_fwd, x, w), 'torch_fwd': t_fwd,
                         'jax_bwd': bm.blocking(j_bwd, x, w), 'torch_bwd': t_bwd},
                        a.min_time, a.repeats)
      diff = float(np.abs(np.asarray(j_fwd(x, w)) - t_fwd().numpy().transpose(0, 2, 3, 1)).max())
      row = {'family': family, 'model': model, 'shape': list(x.shape), 'groups': groups,
             'stride': stride, 'jax_fwd_ms': s['jax_fwd'] * 1e3, 'torch_fwd_ms': s['torch_fwd'] * 1e3,
             'fwd_ratio': s['torch_fwd'] / s['jax_fwd'], 'jax_bwd_ms': s['jax_bwd'] * 1e3,
             'torch_bwd_ms': s['torch_bwd'] * 1e3, 'bwd_ratio': s['torch_bwd'] / s['jax_bwd'],
             'max_diff': diff}
      rows.append(row)
      print(f'| {model} | {row["shape"]} | {groups}, {stride} | {row["jax_fwd_ms"]:.2f} | '
            f'{row["torch_fwd_ms"]:.2f} | **{row["fwd_ratio"]:.2f}x** | {row["jax_bwd_ms"]:.2f} | '
            f'{row["torch_bwd_ms"]:.2f} | **{row["bwd_ratio"]:.2f}x** | {diff:.1e} |', flush=True)
  bm.write_json(a.json, info, vars(a), rows)
  return rows


if __name__ == '__main__':
  main()
