"""The CPU kernels alone: XLA's native convolution against our fast forms, at GhostNet's shapes.

  PYTHONPATH=. python benchmarks/kernels.py --batch 32

Pointwise (1x1, ``dot`` = matmul over channels) and depthwise (``shift_add``) convolutions of
ghostnet_100's stages (224 input), each jitted, both forms interleaved in one process (median of
rounds); prints ms per call, the speed-up and the largest difference between the two outputs.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ghostnets_jax import timing as bm  # noqa: E402

# (kind, spatial size, in channels, out channels, kernel, stride) from ghostnet_100's stages.
SHAPES = (('pointwise', 112, 16, 8, 1, 1), ('pointwise', 56, 48, 12, 1, 1),
          ('pointwise', 28, 120, 20, 1, 1), ('pointwise', 14, 240, 40, 1, 1),
          ('pointwise', 7, 960, 80, 1, 1), ('depthwise', 112, 16, 16, 3, 2),
          ('depthwise', 56, 72, 72, 5, 2), ('depthwise', 28, 60, 60, 3, 1),
          ('depthwise', 14, 336, 336, 3, 1))


def main(argv: Optional[list[str]] = None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--threads', type=int, default=None)
  p.add_argument('--min-time', type=float, default=0.3)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--json', default='benchmarks/results/kernels.json')
  bm.add_host_memory_arg(p)
  a = p.parse_args(argv)
  bm.prepare_process(a.threads, a.host_memory)
  import functools

  import jax.numpy as jnp
  import numpy as np

  from ghostnets_jax.layers import depthwise_conv2d, pointwise_conv2d, torch_padding
  info = bm.machine()
  print(bm.describe(info), flush=True)
  rows = []
  print('| kernel | input (NHWC) | k, stride | native (ms) | fast (ms) | speed-up | max diff |\n'
        '|---|---|---|---:|---:|---:|---:|')
  for kind, hw, cin, cout, k, s in SHAPES:
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(a.batch, hw, hw, cin), jnp.float32)
    if kind == 'pointwise':
      w = jnp.asarray(rng.randn(1, 1, cin, cout) / np.sqrt(cin), jnp.float32)
      fns = {impl: functools.partial(pointwise_conv2d, strides=s, impl=impl) for impl in ('native', 'dot')}
    else:
      w = jnp.asarray(rng.randn(k, k, 1, cout) / k, jnp.float32)
      fns = {impl: functools.partial(depthwise_conv2d, strides=s, padding=torch_padding(k), impl=impl)
             for impl in ('native', 'shift_add')}
    compiled = {impl: bm.compile_jit(fn, x, w)[0] for impl, fn in fns.items()}
    native, fast = compiled.values()
    seconds = bm.time_calls({i: bm.blocking(f, x, w) for i, f in compiled.items()}, a.min_time, a.repeats)
    t_native, t_fast = seconds.values()
    row = {'kernel': kind, 'shape': list(x.shape), 'k': k, 'stride': s, 'native_ms': t_native * 1e3,
           'fast_ms': t_fast * 1e3, 'speedup': t_native / t_fast,
           'max_diff': float(jnp.abs(native(x, w) - fast(x, w)).max())}
    rows.append(row)
    print(f'| {kind} | {row["shape"]} -> {cout} | {k}, {s} | {row["native_ms"]:.2f} | '
          f'{row["fast_ms"]:.2f} | **{row["speedup"]:.2f}x** | {row["max_diff"]:.1e} |', flush=True)
  bm.write_json(a.json, info, vars(a), rows)
  return rows


if __name__ == '__main__':
  main()
