"""Second order vs SGD on the MultiGrain demo: steps and training time to reach SGD's final loss.

  PYTHONPATH=. python benchmarks/second_order.py --json benchmarks/results/second_order.json

Trains ``configs/multigrain.py:demo`` (SGD, momentum 0.9, cosine) and ``:demo,psgd_kron``
(PSGD-Kron, THOR's polynomial lr) with ``main.py`` in turn, from the same initialisation and
data order, and reads the training log (loss averaged over each ``--log-every`` steps, steps/s
per interval). Reported per optimizer: the final loss (mean of the last 3 logged intervals), the
first logged step where the mean of the last 3 intervals is at or below SGD's final loss, the
training time to that step (excluding the first interval, which holds the compile), and the
median time per step.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r'step (\d+)/(\d+)\s+loss ([\d.naif]+)\s+top1 [\d.]+\s+lr \S+\s+([\d.]+) steps/s')


def train(variant: str, log_every: int, extra: list[str]) -> list[tuple[int, float, float]]:
  """(step, interval loss, interval seconds) of one demo run."""
  with tempfile.TemporaryDirectory() as workdir:
    cmd = [sys.executable, os.path.join(ROOT, 'main.py'), f'--config=configs/multigrain.py:{variant}',
           f'--workdir={workdir}', f'--config.log_every_steps={log_every}',
           '--config.eval.every_steps=1000000', '--config.checkpoint.every_steps=1000000', *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, 'PYTHONPATH': ROOT})
  log = proc.stdout + proc.stderr
  if proc.returncode != 0:
    raise SystemExit(f'{variant} failed:\n' + '\n'.join(log.splitlines()[-30:]))
  rows, last = [], 0
  for m in LINE.finditer(log):
    step, loss, sps = int(m.group(1)), float(m.group(3)), float(m.group(4))
    rows.append((step, loss, (step - last) / sps))
    last = step
  return rows


def summarise(rows, target=None) -> dict:
  final = statistics.mean(r[1] for r in rows[-3:])
  per_step = statistics.median(r[2] / (r[0] - p[0]) for p, r in zip(rows, rows[1:]))
  out = {'steps': rows[-1][0], 'final_loss': final, 'ms_per_step': 1e3 * per_step,
         'first_interval_s': rows[0][2]}
  target = final if target is None else target
  t = 0.0
  for i, r in enumerate(rows):
    t += r[2] if i else 0.0
    smooth = statistics.mean(q[1] for q in rows[max(i - 2, 0):i + 1])   # as the final loss: 3 intervals
    if i >= 2 and smooth <= target:
      out.update(steps_to_target=r[0], seconds_to_target=t)
      break
  return out


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--log-every', type=int, default=5)
  p.add_argument('--json', default='benchmarks/results/second_order.json')
  p.add_argument('--extra', action='append', default=[], help='more main.py flags for both runs')
  p.add_argument('--psgd', action='append', default=[],
                 help='more main.py flags for the PSGD run, e.g. --psgd=--config.optim.lr=1e-3')
  p.add_argument('--sgd-from', default='', help="reuse the SGD run of an earlier --json")
  a = p.parse_args(argv)
  if a.sgd_from:
    with open(a.sgd_from) as f:
      sgd = [tuple(r) for r in json.load(f)['curves']['sgd']]
  else:
    sgd = train('demo', a.log_every, a.extra)
  psgd = train('demo,psgd_kron', a.log_every, a.extra + a.psgd)
  res = {'sgd': summarise(sgd)}
  res['psgd_kron'] = summarise(psgd, res['sgd']['final_loss'])
  res['sgd'] = summarise(sgd, res['sgd']['final_loss'])
  res['overhead_per_step'] = res['psgd_kron']['ms_per_step'] / res['sgd']['ms_per_step']
  res['load'] = os.getloadavg()
  res['psgd_flags'] = a.psgd
  res['curves'] = {'sgd': sgd, 'psgd_kron': psgd}
  print(json.dumps({k: v for k, v in res.items() if k != 'curves'}, indent=1))
  if a.json:
    os.makedirs(os.path.dirname(a.json) or '.', exist_ok=True)
    with open(a.json, 'w') as f:
      json.dump(res, f, indent=1)
  return res


if __name__ == '__main__':
  main()
