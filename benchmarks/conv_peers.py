"""Dense and grouped 3x3 convolutions, ours against PyTorch, at the shapes of the families whose
training step on CPU depends on them.

  PYTHONPATH=. python benchmarks/conv_peers.py --threads 1
  PYTHONPATH=. python benchmarks/conv_peers.py --families regnet --batch 32 --json out.json

G-GhostNet on RegNetX (g_ghost_regnetx_032: 3x3 convolutions in groups of 48 channels), and the
ResNet-style bodies of GhostNets_D and MultiGrain (dense 3x3): each 3x3 convolution of a stage, at
its stride, through ``ghostnets_jax.layers.grouped_conv2d`` with each of ``--kernels`` (default:
'split', XLA's form on CPU, one dense convolution per group; and 'onednn', the oneDNN extension of
``ghostnets_jax.layers.onednn``, the CPU default where it builds) and as PyTorch's ``F.conv2d``
(oneDNN on CPU; NCHW, as ``benchmarks/train_step.py``'s eager PyTorch step). Two measurements per
shape, all candidates interleaved in one process (median of rounds): the forward alone and forward
+ backward (the gradients of ``sum(y * r)`` for the input and the kernel, what a training step
computes). Prints ms per call, PyTorch / ours per kernel (above 1: ours is faster) and the largest
output difference.
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
  p.add_argument('--kernels', default='split,onednn',
                 help="comma-separated grouped_conv2d kernels: 'split' (XLA), 'native', 'onednn'")
  p.add_argument('--scale', type=int, default=1,
                 help='divide every spatial size by this (quick checks; 1 = the real shapes)')
  bm.add_timing_args(p)
  p.add_argument('--json', default='benchmarks/results/conv_peers.json')
  a = p.parse_args(argv)
  unknown = [f for f in a.families.split(',') if f not in SHAPES]
  if unknown:
    p.error(f'--families: unknown {unknown}; choose from {sorted(SHAPES)}')
  bad = [k for k in a.kernels.split(',') if k not in ('split', 'native', 'onednn')]
  if bad:
    p.error(f"--kernels: unknown {bad}; choose from 'split', 'native', 'onednn'")
  if a.scale < 1:
    p.error(f'--scale must be a positive integer, got {a.scale}')
  return a


def jax_calls(x, w, r, stride, groups, impl=None):
  """(forward, forward + backward) of the layer's convolution with kernel ``impl`` (None: the
  backend's choice), compiled."""
  import jax
  import jax.numpy as jnp

  from ghostnets_jax.layers import grouped_conv2d, torch_padding

  def conv(x, w):
    return grouped_conv2d(x, w, stride, torch_padding(3), groups=groups, impl=impl)

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
  kernels = a.kernels.split(',')
  print('| family | input (NHWC) | groups, stride | PyTorch fwd (ms) | '
        + ' | '.join(f'{k} fwd (ms) | PyTorch / {k}' for k in kernels)
        + ' | PyTorch fwd+bwd (ms) | '
        + ' | '.join(f'{k} fwd+bwd (ms) | PyTorch / {k}' for k in kernels) + ' | max diff |\n'
        + '|---|---|---|' + '---:|' * (3 + 4 * len(kernels)))
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
      t_fwd, t_bwd = torch_calls(x, w, r, stride, groups)
      calls, diff = {'torch_fwd': t_fwd, 'torch_bwd': t_bwd}, 0.0
      want = t_fwd().numpy().transpose(0, 2, 3, 1)
      for k in kernels:
        j_fwd, j_bwd = jax_calls(x, w, r, stride, groups, k)
        calls[f'{k}_fwd'], calls[f'{k}_bwd'] = bm.blocking(j_fwd, x, w), bm.blocking(j_bwd, x, w)
        diff = max(diff, float(np.abs(np.asarray(j_fwd(x, w)) - want).max()))
      s = bm.time_calls(calls, a.min_time, a.repeats)
      row = {'family': family, 'model': model, 'shape': list(x.shape), 'groups': groups,
             'stride': stride, 'torch_fwd_ms': s['torch_fwd'] * 1e3,
             'torch_bwd_ms': s['torch_bwd'] * 1e3, 'max_diff': diff}
      for k in kernels:
        row.update({f'{k}_fwd_ms': s[f'{k}_fwd'] * 1e3, f'{k}_fwd_ratio': s['torch_fwd'] / s[f'{k}_fwd'],
                    f'{k}_bwd_ms': s[f'{k}_bwd'] * 1e3, f'{k}_bwd_ratio': s['torch_bwd'] / s[f'{k}_bwd']})
      rows.append(row)
      fwd = ' | '.join(f'{row[f"{k}_fwd_ms"]:.2f} | **{row[f"{k}_fwd_ratio"]:.2f}x**' for k in kernels)
      bwd = ' | '.join(f'{row[f"{k}_bwd_ms"]:.2f} | **{row[f"{k}_bwd_ratio"]:.2f}x**' for k in kernels)
      print(f'| {model} | {row["shape"]} | {groups}, {stride} | {row["torch_fwd_ms"]:.2f} | {fwd} | '
            f'{row["torch_bwd_ms"]:.2f} | {bwd} | {diff:.1e} |', flush=True)
  bm.write_json(a.json, info, vars(a), rows)
  return rows


if __name__ == '__main__':
  main()
