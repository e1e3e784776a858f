"""Soak: one long training run of many short epochs with frequent checkpoints and evals, watching
host memory and the checkpoint directory for growth.

  PYTHONPATH=. python benchmarks/soak.py                      # 1000 steps, ~6-8 min on 2 cores
  PYTHONPATH=. python benchmarks/soak.py --steps 40 --json soak.json

The tiny GhostNet of the tests trains on a slice of the embedded Fashion-MNIST data
(``--epoch-examples`` images: an epoch every few steps), EMA on, a checkpoint every
``--ckpt-every`` steps (keep ``--keep`` + the best), an eval (raw and EMA weights) every
``--eval-every`` steps, through :func:`ghostnets_jax.train.trainer.train_and_evaluate` as
``main.py`` runs it. At every log step it samples the process' resident memory (``VmRSS``
from /proc/self/status) and the size and steps of the checkpoint directory; at the end it prints
the growth from the first sample after warm-up (the first eval and save) to the last, and over
the second half of the run. A run that leaks host memory per step, eval or checkpoint shows a
steady rise; keep-N shows as a flat directory size.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rss_mb(trim: bool = True) -> float:
  """Resident set size of this process now (MB); with ``trim``, after a garbage collection and
  glibc's ``malloc_trim`` (freed heap returned to the system), so that it follows live memory
  rather than allocator caching."""
  if trim:
    gc.collect()
    try:
      ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):   # not glibc
      pass
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith('VmRSS:'):
        return int(line.split()[1]) / 1024
  raise RuntimeError('no VmRSS in /proc/self/status')


def dir_mb(path: str) -> float:
  total = 0
  for dirpath, _, filenames in os.walk(path):
    total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in filenames
                 if os.path.exists(os.path.join(dirpath, f)))
  return total / 2 ** 20


def saved_steps(ckpt_dir: str) -> list[int]:
  return sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) if os.path.isdir(
      ckpt_dir) else []


class Probe(logging.Handler):
  """Samples memory and the checkpoint directory at each of the trainer's ``step N/M`` log lines
  and records each eval; forwards warnings to stderr."""

  def __init__(self, ckpt_dir: str, trim: bool = True):
    super().__init__(logging.INFO)
    self.ckpt_dir, self.trim, self.t0 = ckpt_dir, trim, time.time()
    self.samples: list[dict[str, Any]] = []
    self.evals: list[dict[str, Any]] = []

  def emit(self, record: logging.LogRecord) -> None:
    msg = str(record.msg)
    if msg.startswith('step %d/%d'):
      s = {'step': int(record.args[0]), 'time_s': round(time.time() - self.t0, 1),
           'rss_mb': round(rss_mb(self.trim), 1), 'ckpt_mb': round(dir_mb(self.ckpt_dir), 2),
           'ckpts': saved_steps(self.ckpt_dir)}
      self.samples.append(s)
      print(f'{s["step"]:6d} {s["time_s"]:8.1f} {s["rss_mb"]:9.1f} {s["ckpt_mb"]:9.2f}  '
            f'{s["ckpts"]}', flush=True)
    elif msg.startswith('eval at step %d'):
      m = dict(re.findall(r'(\w+) ([\d.]+)', str(record.args[1])))
      self.evals.append({'step': int(record.args[0]),
                         **{k: float(m[k]) for k in ('top1', 'ema_top1') if k in m}})
    elif record.levelno >= logging.WARNING:
      sys.stderr.write(f'{record.levelname}: {record.getMessage()}\n')


def soak_config(args: argparse.Namespace):
  from tests.train_helpers import tiny_config
  return tiny_config(**{
      'num_train_steps': args.steps, 'log_every_steps': args.sample_every,
      'data.train_split': f'train[:{args.epoch_examples}]',
      'data.eval_split': f'test[:{args.eval_examples}]', 'batch_size': args.batch,
      'eval.batch_size': args.eval_examples, 'eval.every_steps': args.eval_every,
      'checkpoint.every_steps': args.ckpt_every, 'checkpoint.keep': args.keep,
      'checkpoint.keep_best': 1, 'ema.decay': 0.9})


def summarize(samples: list[dict], warm_step: int) -> dict[str, Any]:
  """Growth of RSS and of the checkpoint directory: warm first sample -> last, and over the
  second half of the run."""
  warm = next((s for s in samples if s['step'] >= warm_step), samples[0])
  last = samples[-1]
  half = next(s for s in samples if s['step'] >= (warm['step'] + last['step']) / 2)
  steps = max(last['step'] - half['step'], 1)
  return {
      'first': samples[0], 'warm': warm, 'half': half, 'last': last,
      'rss_growth_mb': round(last['rss_mb'] - warm['rss_mb'], 1),
      'rss_growth_second_half_mb': round(last['rss_mb'] - half['rss_mb'], 1),
      'rss_growth_per_1000_steps_second_half_mb': round(
          1000 * (last['rss_mb'] - half['rss_mb']) / steps, 1),
      'rss_peak_mb': round(max(s['rss_mb'] for s in samples), 1),
      'ckpt_growth_mb': round(last['ckpt_mb'] - warm['ckpt_mb'], 2),
      'ckpt_max_mb': round(max(s['ckpt_mb'] for s in samples), 2),
  }


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--steps', type=int, default=1000)
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--epoch-examples', type=int, default=320, help='train examples (an epoch)')
  p.add_argument('--eval-examples', type=int, default=256)
  p.add_argument('--ckpt-every', type=int, default=5)
  p.add_argument('--eval-every', type=int, default=20)
  p.add_argument('--keep', type=int, default=3, help='latest checkpoints kept (+ the best)')
  p.add_argument('--sample-every', type=int, default=10, help='log/sample every n steps')
  p.add_argument('--no-trim', action='store_true', help='raw RSS (no gc / malloc_trim first)')
  p.add_argument('--workdir', default=None, help='default: a temporary directory, removed')
  p.add_argument('--json', default=None, help='write samples, evals and the summary here')
  return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
  args = parse_args(argv)
  workdir = args.workdir or tempfile.mkdtemp(prefix='ghostnets_jax-soak-')
  from ghostnets_jax.train import trainer
  config = soak_config(args)
  probe = Probe(os.path.join(workdir, 'checkpoints'), trim=not args.no_trim)
  root = logging.getLogger()
  handlers, level = root.handlers[:], root.level
  root.handlers, root.level = [probe], logging.INFO
  print(f'soak: {args.steps} steps, epoch = {args.epoch_examples // args.batch} steps, checkpoint '
        f'every {args.ckpt_every} (keep {args.keep} + best), eval every {args.eval_every}; '
        f'workdir {workdir}')
  print(f'{"step":>6} {"time_s":>8} {"rss_mb":>9} {"ckpt_mb":>9}  checkpoints')
  try:
    trainer.train_and_evaluate(config, workdir)
  finally:
    root.handlers, root.level = handlers, level
  out = {'args': vars(args), 'samples': probe.samples, 'evals': probe.evals,
         'final_ckpts': saved_steps(probe.ckpt_dir),
         'summary': summarize(probe.samples, max(args.eval_every, args.ckpt_every))}
  s = out['summary']
  print(f'RSS: {s["first"]["rss_mb"]} MB at step {s["first"]["step"]}, {s["warm"]["rss_mb"]} MB '
        f'after warm-up (step {s["warm"]["step"]}), {s["half"]["rss_mb"]} MB at step '
        f'{s["half"]["step"]}, {s["last"]["rss_mb"]} MB at step {s["last"]["step"]} (peak '
        f'{s["rss_peak_mb"]} MB)')
  print(f'RSS growth: {s["rss_growth_mb"]:+.1f} MB warm->last, {s["rss_growth_second_half_mb"]:+.1f}'
        f' MB over the second half ({s["rss_growth_per_1000_steps_second_half_mb"]:+.1f} MB per '
        '1000 steps)')
  print(f'checkpoints: {s["warm"]["ckpt_mb"]:.2f} MB after warm-up -> {s["last"]["ckpt_mb"]:.2f} MB '
        f'at the end (max {s["ckpt_max_mb"]:.2f} MB); kept steps {out["final_ckpts"]}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(out, f, indent=1)
  if not args.workdir:
    shutil.rmtree(workdir, ignore_errors=True)
  return out


if __name__ == '__main__':
  main()
