"""The training step under three host-memory settings, each in a fresh process: page faults,
system and user CPU time and wall-clock time per step, and the resident memory it ends with.

  PYTHONPATH=. python benchmarks/host_memory.py --models ghostnet_100 --rounds 2
  PYTHONPATH=. python benchmarks/host_memory.py --modes default,retain --steps 10

XLA:CPU allocates each step's temporaries as one block and frees it after the step; how glibc's
malloc hands that block out decides whether every step page-faults it in again. Modes:
``default`` (glibc as it is), ``retain`` (``ghostnets_jax.hostmem.retain_freed_memory``: freed
blocks kept for reuse, what ``--config.host_memory=retain`` does) and ``hugetlb`` (the
environment ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``: transparent huge pages for malloc's
mappings). The step is ``benchmarks/train_step.py``'s (the trainer's own, full recipe). The
setting must be made before a process starts its threads, so every measurement is a child
process; the modes alternate in ``--rounds`` rounds. Prints the median per mode.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODES = ('default', 'retain', 'hugetlb')


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--models', default='ghostnet_100')
  p.add_argument('--modes', default=','.join(MODES), help=f'comma-separated, of {MODES}')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--size', type=int, default=None, help="image size (default: the model's own)")
  p.add_argument('--steps', type=int, default=5, help='timed steps per process (after 2 warm-up)')
  p.add_argument('--rounds', type=int, default=2, help='processes per mode, modes alternating')
  p.add_argument('--threads', type=int, default=None)
  p.add_argument('--json', default='benchmarks/results/host_memory.json')
  p.add_argument('--child', default=None, help=argparse.SUPPRESS)   # MODE,MODEL: one measurement
  a = p.parse_args(argv)
  bad = [m for m in a.modes.split(',') if m not in MODES]
  if bad:
    p.error(f'--modes: unknown {bad}; choose from {list(MODES)}')
  if a.steps < 1 or a.rounds < 1:
    p.error('--steps and --rounds must be at least 1')
  return a


def child(a: argparse.Namespace) -> dict:
  """One process: the setting, the compiled step, then ``a.steps`` timed steps."""
  mode, name = a.child.split(',')
  from ghostnets_jax import timing as bm
  bm.prepare_process(a.threads, 'retain' if mode == 'retain' else 'default')
  import resource
  import time

  from benchmarks import train_step
  from ghostnets_jax.registry import get_spec
  size = a.size or get_spec(name).input_size
  c = train_step.make_config(name, argparse.Namespace(batch=a.batch, dtype='float32', size=size,
                                                      recipe='full'))
  step = train_step.jax_step(c, bm.init_variables_for(name, size), size)
  for _ in range(2):
    step['call']()
  r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
  for _ in range(a.steps):
    step['call']()
  wall, r1 = (time.perf_counter() - t0) / a.steps, resource.getrusage(resource.RUSAGE_SELF)
  per = lambda f: (getattr(r1, f) - getattr(r0, f)) / a.steps   # noqa: E731
  return {'model': name, 'mode': mode, 'host_memory': bm.machine()['host_memory'],
          'temp_mb': step['temp_mb'], 'wall_ms': wall * 1e3,
          'faults': per('ru_minflt'), 'sys_s': per('ru_stime'), 'user_s': per('ru_utime'),
          'cpu_s': per('ru_stime') + per('ru_utime'),
          'rss_end_mb': train_step.resident_bytes() / 2**20, 'max_rss_mb': r1.ru_maxrss / 1024}


def measure(a: argparse.Namespace, mode: str, name: str) -> dict:
  env = {**os.environ, 'PYTHONPATH': ROOT}
  if mode == 'hugetlb':
    env['GLIBC_TUNABLES'] = ':'.join(filter(None, [env.get('GLIBC_TUNABLES'), 'glibc.malloc.hugetlb=1']))
  args = ['--child', f'{mode},{name}', '--batch', str(a.batch), '--steps', str(a.steps)]
  args += ['--size', str(a.size)] if a.size else []
  args += ['--threads', str(a.threads)] if a.threads else []
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(f'{mode} {name} failed:\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: Optional[list[str]] = None) -> list[dict]:
  a = parse_args(argv)
  if a.child:
    print(json.dumps(child(a)))
    return []
  from ghostnets_jax import timing as bm
  info = bm.machine()
  print(bm.describe(info), flush=True)
  rows = []
  for name in bm.model_names(a.models):
    runs: dict[str, list[dict]] = {m: [] for m in a.modes.split(',')}
    for _ in range(a.rounds):
      for mode in runs:
        runs[mode].append(measure(a, mode, name))
        print(bm.row_line(runs[mode][-1]), flush=True)
    for mode, rs in runs.items():
      row = {'model': name, 'mode': mode, 'temp_mb': rs[0]['temp_mb'], 'processes': len(rs)}
      row.update({k: statistics.median(r[k] for r in rs)
                  for k in ('wall_ms', 'faults', 'sys_s', 'user_s', 'cpu_s', 'rss_end_mb', 'max_rss_mb')})
      rows.append(row)
  print('| model | mode | XLA temporaries (MiB) | page faults / step | system s / step | user s / step '
        '| CPU s / step | wall ms / step | resident MiB at the end | peak resident MiB |\n'
        '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  for r in rows:
    print(f'| {r["model"]} | {r["mode"]} | {r["temp_mb"]:.0f} | {r["faults"]:.0f} | {r["sys_s"]:.3f} | '
          f'{r["user_s"]:.3f} | {r["cpu_s"]:.3f} | {r["wall_ms"]:.0f} | {r["rss_end_mb"]:.0f} | '
          f'{r["max_rss_mb"]:.0f} |')
  bm.write_json(a.json, info, vars(a), rows)
  return rows


if __name__ == '__main__':
  main()
