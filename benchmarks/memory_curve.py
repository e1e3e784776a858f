"""Training-step memory against batch size: XLA's compiled step against PyTorch eager, on CPU.

  PYTHONPATH=. python benchmarks/memory_curve.py --models ghostnet_100,repghostnet_100 --batches 8,16,32,64

For each model and batch this compiles the trainer's own step (the one
``benchmarks/train_step.py`` times, with the same recipe: label smoothing, mixup/CutMix, EMA)
and reads XLA's peak and temporaries from ``compiled.memory_analysis()`` (nothing is run), then
measures PyTorch's memory for the first step of a fresh reference model, in a child process of its
own per point: on the CPU that figure is the growth of resident memory, and memory that glibc kept
from an earlier step would be reused without growing it.

A least-squares line through each side's points over the batches gives the per-image slope (MiB per
extra image: the activations and their gradients) and the intercept (what does not scale with the
batch: weights, gradients, optimizer state and EMA for XLA; for PyTorch the step's gradients,
momentum buffers and the libraries' workspaces, the model itself being there before the step).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import train_step as ts  # noqa: E402
from ghostnets_jax import timing as bm  # noqa: E402

_CHILD_TAG = 'torch-memory-json: '


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--models', default='ghostnet_100,repghostnet_100,ghostnetv2_100,g_ghost_regnetx_032')
  p.add_argument('--batches', default='8,16,32,64', help='comma-separated batch sizes')
  p.add_argument('--size', type=int, default=None, help="image size (default: the model's own)")
  p.add_argument('--recipe', choices=sorted(ts.RECIPES), default='full')
  p.add_argument('--dtype', choices=('float32', 'bfloat16'), default='float32')
  p.add_argument('--no-torch', action='store_true', help='XLA only (no PyTorch children)')
  p.add_argument('--threads', type=int, default=None)
  p.add_argument('--json', default='benchmarks/results/memory_curve.json')
  p.add_argument('--torch-child', default='', help=argparse.SUPPRESS)  # 'model:batch', internal
  a = p.parse_args(argv)
  try:
    a.batch_list = sorted({int(b) for b in a.batches.split(',') if b.strip()})
  except ValueError:
    p.error(f'--batches must be comma-separated whole numbers, got {a.batches!r} (e.g. 8,16,32,64)')
  if not a.batch_list or a.batch_list[0] < 1:
    p.error(f'--batches needs batch sizes of at least 1, got {a.batches!r} (e.g. 8,16,32,64)')
  return a


def step_args(a: argparse.Namespace, batch: int) -> argparse.Namespace:
  """What ``train_step.make_config`` reads, for one batch size."""
  return argparse.Namespace(batch=batch, dtype=a.dtype, size=a.size, recipe=a.recipe)


def xla_memory(name: str, batch: int, a: argparse.Namespace) -> dict:
  """XLA's peak and temporaries (MiB) of the trainer's step compiled at ``batch`` (not run)."""
  import ghostnets_jax as gj
  size = a.size or gj.get_spec(name).input_size
  j = ts.jax_step(ts.make_config(name, step_args(a, batch)), bm.init_variables_for(name, size), size)
  return {'xla_peak_mb': j['peak_mb'], 'xla_temp_mb': j['temp_mb'], 'jax_compile_s': j['compile_s']}


def torch_memory_here(name: str, batch: int, a: argparse.Namespace) -> float:
  """PyTorch's memory (MiB) for the first step of a fresh reference model, in this process."""
  import torch

  import ghostnets_jax as gj
  from ghostnets_jax import reference_torch
  torch.set_num_threads(bm.cpu_threads())
  size = a.size or gj.get_spec(name).input_size
  call = ts.torch_step(reference_torch.build(name, 1000), ts.make_config(name, step_args(a, batch)), size)
  return ts.torch_peak_mb(call)


def torch_memory(name: str, batch: int, a: argparse.Namespace) -> float:
  """:func:`torch_memory_here` in a fresh child process (the same script)."""
  cmd = [sys.executable, os.path.abspath(__file__), '--torch-child', f'{name}:{batch}',
         '--recipe', a.recipe, '--dtype', a.dtype, '--json', '']
  if a.size:
    cmd += ['--size', str(a.size)]
  proc = subprocess.run(cmd, capture_output=True, text=True)
  lines = [l for l in proc.stdout.splitlines() if l.startswith(_CHILD_TAG)]
  if proc.returncode != 0 or not lines:
    tail = '\n  '.join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    raise RuntimeError(f'the PyTorch step of {name} at batch {batch} failed '
                       f'(exit {proc.returncode}):\n  {tail}')
  return json.loads(lines[-1][len(_CHILD_TAG):])['torch_mb']


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
  """(slope, intercept) of the least-squares line through the points ``(xs, ys)``."""
  n = len(xs)
  if n < 2 or len(set(xs)) < 2:
    raise ValueError('a line needs at least two different batch sizes')
  mx, my = sum(xs) / n, sum(ys) / n
  slope = (sum((x - mx) * (y - my) for x, y in zip(xs, ys))
           / sum((x - mx) ** 2 for x in xs))
  return slope, my - slope * mx


def fits(rows: list[dict]) -> list[dict]:
  """Per model and measure: the slope (MiB per image) and intercept (MiB) over its batches."""
  out = []
  for name in dict.fromkeys(r['model'] for r in rows):
    mine = [r for r in rows if r['model'] == name]
    if len({r['batch'] for r in mine}) < 2:
      continue
    for key in ('xla_peak_mb', 'xla_temp_mb', 'torch_rss_growth_mb'):
      pts = [(r['batch'], r[key]) for r in mine if r.get(key) is not None]
      if len({b for b, _ in pts}) >= 2:
        slope, icpt = fit_line(*zip(*pts))
        out.append({'model': name, 'measure': key, 'mb_per_image': slope, 'intercept_mb': icpt})
  return out


def table(rows: list[dict], lines: list[dict]) -> str:
  out = ['| model | batch | XLA peak (MiB) | XLA temporaries (MiB) | PyTorch RSS growth (MiB) |',
         '|---|---:|---:|---:|---:|']
  for r in rows:
    rss = f'{r["torch_rss_growth_mb"]:.0f}' if r.get('torch_rss_growth_mb') is not None else '-'
    out.append(f'| {r["model"]} | {r["batch"]} | {r["xla_peak_mb"]:.0f} | {r["xla_temp_mb"]:.0f} | {rss} |')
  names = {'xla_peak_mb': 'XLA peak', 'xla_temp_mb': 'XLA temporaries',
           'torch_rss_growth_mb': 'PyTorch RSS growth'}
  out += ['', '| model | measure | MiB per image | intercept (MiB) |', '|---|---|---:|---:|']
  out += [f'| {f["model"]} | {names[f["measure"]]} | {f["mb_per_image"]:.1f} | {f["intercept_mb"]:.0f} |'
          for f in lines]
  return '\n'.join(out)


def main(argv: Optional[list[str]] = None) -> list[dict]:
  a = parse_args(argv)
  if a.threads:
    bm.limit_cpus(a.threads)   # children inherit the affinity
  if a.torch_child:
    name, batch = a.torch_child.rsplit(':', 1)
    print(_CHILD_TAG + json.dumps({'torch_mb': torch_memory_here(name, int(batch), a)}), flush=True)
    return []
  info = bm.machine()
  print(bm.describe(info), flush=True)
  print(f'recipe {a.recipe}: {json.dumps(ts.RECIPES[a.recipe])}', flush=True)
  args = {k: v for k, v in vars(a).items() if k != 'torch_child'}
  rows = []
  for name in bm.model_names(a.models):
    for batch in a.batch_list:
      row = {'model': name, 'batch': batch, 'dtype': a.dtype, 'recipe': a.recipe,
             **xla_memory(name, batch, a)}
      if not a.no_torch:
        row['torch_rss_growth_mb'] = torch_memory(name, batch, a)
      rows.append(row)
      print(bm.row_line(row, digits=4), flush=True)
      info['load_avg_after'] = [round(x, 2) for x in os.getloadavg()]
      bm.write_json(a.json, info, args, rows, fits=fits(rows))   # after each point: a long run keeps its rows
  print(table(rows, fits(rows)))
  print(f'load average after: {", ".join(f"{x:.2f}" for x in os.getloadavg())}')
  return rows


if __name__ == '__main__':
  main()
