"""Where a model's forward or train step spends its time: XLA ops from a ``jax.profiler`` trace.

  PYTHONPATH=. python benchmarks/op_profile.py --model ghostnet_100 --batch 32 --threads 1
  PYTHONPATH=. python benchmarks/op_profile.py --model ghostnet_100 --form step --by-layer

``--form step`` profiles the trainer's whole jitted train step (``benchmarks/train_step.py``'s,
recipe features on) instead of the forward, and labels each op forward or backward (``bwd``: its
``op_name`` is under ``transpose(...)``, JAX's reverse pass) and sums the time per pass.

Compiles the eval-mode forward (deploy form by default), runs it under ``jax.profiler.trace``,
reads the trace's per-op events (one per executed XLA fusion/thunk) and prints the ops that take
the most time, each with its share of the forward, its kind (``ynn_fusion``: a GEMM handed to
XNNPACK/YNNPACK; ``*_fusion``: an XLA loop fusion; ``convolution``: XLA's conv emitter) and the
Flax layer it comes from (the op's ``op_name`` metadata in the compiled HLO). ``--by-layer`` sums
the ops per layer instead. No trace viewer needed; the raw trace stays under ``--trace-dir``.
"""
from __future__ import annotations

import argparse
import collections
import functools
import glob
import gzip
import json
import os
import re
import sys
import tempfile
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ghostnets_jax import timing as bm  # noqa: E402


def op_layers(hlo_text: str) -> dict[str, str]:
  """``{op name: Flax layer path}`` from the compiled HLO's ``op_name`` metadata."""
  return {op: layer for op, (layer, _) in op_meta(hlo_text).items()}


def op_meta(hlo_text: str) -> dict[str, tuple[str, str]]:
  """``{op name: (Flax layer path, 'fwd' or 'bwd')}`` from the compiled HLO's ``op_name``."""
  meta = {}
  for m in re.finditer(r'^\s*%?([\w.\-]+) = .*?op_name="([^"]*)"', hlo_text, re.M):
    path = m.group(2).split('/')
    # jit(fn)/Model/Model.forward/blocks_1_0/ghost1/.../primitive -> blocks_1_0/ghost1/...
    layer = '/'.join(p for p in path[1:-1] if '.' not in p and '(' not in p) or path[-1]
    meta[m.group(1)] = (layer, 'bwd' if 'transpose(' in m.group(2) else 'fwd')
  return meta


def op_times(trace_dir: str, runs: int) -> dict[str, float]:
  """Mean seconds per run of each op in the newest trace under ``trace_dir``."""
  files = sorted(glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True),
                 key=os.path.getmtime)
  if not files:
    raise FileNotFoundError(f'no *.trace.json.gz under {trace_dir}: did jax.profiler write one?')
  with gzip.open(files[-1]) as f:
    events = json.load(f)['traceEvents']
  acc: dict[str, float] = collections.Counter()
  for e in events:
    if e.get('ph') == 'X' and 'dur' in e:
      acc[e['name']] += e['dur'] * 1e-6 / runs
  return acc


def op_kind(op: str) -> str:
  """'gemm' (XNNPACK/YNNPACK), 'conv' (XLA's convolution emitter), 'fusion' (XLA loop) or the op."""
  base = re.sub(r'\.\d+$', '', op)
  if base.startswith(('ynn', 'xnn')):
    return 'gemm'
  if 'conv' in base and 'fusion' not in base:
    return 'conv'
  return 'fusion' if 'fusion' in base else base


def main(argv: Optional[list[str]] = None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--model', default='ghostnet_100')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--size', type=int, default=None)
  p.add_argument('--form', choices=('train', 'deploy', 'step'), default='deploy',
                 help="forward of the training or deploy form, or the whole train step")
  p.add_argument('--recipe', choices=('full', 'plain'), default='full', help='--form step: recipe')
  p.add_argument('--threads', type=int, default=None)
  p.add_argument('--runs', type=int, default=3)
  p.add_argument('--top', type=int, default=25)
  p.add_argument('--by-layer', action='store_true', help='sum the ops of each Flax layer')
  p.add_argument('--trace-dir', default=None)
  p.add_argument('--json', default=None)
  bm.add_host_memory_arg(p)
  a = p.parse_args(argv)
  bm.prepare_process(a.threads, a.host_memory)
  import jax
  import jax.numpy as jnp

  from ghostnets_jax.registry import create_model, get_spec
  info = bm.machine()
  print(bm.describe(info), flush=True)
  size = a.size or get_spec(a.model).input_size
  if a.form == 'step':
    from benchmarks import train_step
    c = train_step.make_config(a.model, argparse.Namespace(batch=a.batch, dtype='float32',
                                                           size=size, recipe=a.recipe))
    step = train_step.jax_step(c, bm.init_variables_for(a.model, size), size)
    fn, compile_s, call = step['compiled'], step['compile_s'], step['call']
  else:
    model, variables = bm.eval_forms(create_model(a.model), bm.init_variables_for(a.model, size))[a.form]
    x = jnp.asarray(bm.images(a.batch, size))
    fn, compile_s = bm.compile_jit(functools.partial(model.apply, train=False), variables, x)
    call = bm.blocking(fn, variables, x)
  meta = op_meta(fn.as_text())
  layers = {op: layer for op, (layer, _) in meta.items()}
  seconds = bm.time_calls({'fwd': call}, min_time=1.0, repeats=3)['fwd']
  trace_dir = a.trace_dir or tempfile.mkdtemp(prefix='ghostnets_profile_')
  with jax.profiler.trace(trace_dir):
    for _ in range(a.runs):
      call()
  times = {k: v for k, v in op_times(trace_dir, a.runs).items() if k in layers}
  total = sum(times.values())
  groups: dict[str, float] = collections.Counter()
  kinds: dict[str, str] = {}
  for op, t in times.items():
    key = (f'{meta[op][1]} {layers[op]}' if a.form == 'step' else layers[op]) if a.by_layer else op
    groups[key] += t
    kinds[key] = 'layer' if a.by_layer else op_kind(op)
  print(f'{a.model} ({a.form}), batch {a.batch} at {size}: {seconds * 1e3:.1f} ms per call '
        f'({a.batch / seconds:.1f} img/s), {len(times)} ops traced summing to {total * 1e3:.1f} ms; '
        f'compile {compile_s:.1f} s; trace in {trace_dir}')
  print('| ms | share | kind | op | layer |\n|---:|---:|---|---|---|' if not a.by_layer
        else '| ms | share | layer |\n|---:|---:|---|')
  rows = []
  for key, t in sorted(groups.items(), key=lambda kv: -kv[1])[:a.top]:
    row = {'key': key, 'ms': t * 1e3, 'share': t / total}
    rows.append(row)
    if a.by_layer:
      print(f'| {t * 1e3:.2f} | {t / total:.1%} | {key} |')
    else:
      print(f'| {t * 1e3:.2f} | {t / total:.1%} | {kinds[key]} | {key} | {meta[key][1]} {layers[key]} |')
  by_kind: dict[str, float] = collections.Counter()
  for op, t in times.items():
    by_kind[op_kind(op)] += t
  if a.form == 'step':
    by_pass: dict[str, float] = collections.Counter()
    for op, t in times.items():
      by_pass[meta[op][1]] += t
    print('by pass: ' + ', '.join(f'{k} {v * 1e3:.0f} ms ({v / total:.0%})' for k, v in
                                  sorted(by_pass.items())))
  print('by op kind: ' + ', '.join(f'{k} {v / total:.0%}' for k, v in
                                   sorted(by_kind.items(), key=lambda kv: -kv[1])[:6]))
  if a.json:
    bm.write_json(a.json, info, vars(a), rows)
  return rows


if __name__ == '__main__':
  main()
