"""A shortened soak (``benchmarks/soak.py``, 30 steps, 3 epochs): the checkpoint directory never
holds more than keep-N + the best (+ one just saved, before orbax deletes the oldest) and ends
with exactly the latest keep-N plus the best by eval; host memory does not grow grossly."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.train_helpers import embedded_data_dir, run_python

pytestmark = pytest.mark.xdist_group('reliability')

KEEP, STEPS, CKPT_EVERY, EVAL_EVERY = 3, 30, 2, 4   # every eval step is a save step
# Bound on the RSS growth over the second half (steps ~15-30; RSS sampled after gc + malloc_trim).
# The process holds ~1 GB (TensorFlow, XLA, tf.data). In short runs like this one the window moved
# between -31 and +53 MB with no leak (caches still warming, tf.data/allocator noise); over the
# 1000-step soak RSS rose 1047 -> 1094 MB in the first half and 1094 -> 1100 MB in the second
# (docs/training.md, crash safety). 150 MB is ~3x the worst short-run noise: it catches gross leaks only,
# e.g. an eval or save keeping a tf.data pipeline or an executable alive each time (a few MB to
# tens of MB each, 8 evals and 15 saves here), not a slow drift; that is the soak script's job.
RSS_BOUND_MB = 150


def test_short_soak_keeps_n_checkpoints_and_host_memory_flat(tmp_path):
  embedded_data_dir()
  out = tmp_path / 'soak.json'
  p = run_python(['benchmarks/soak.py', f'--steps={STEPS}', f'--ckpt-every={CKPT_EVERY}',
                  f'--eval-every={EVAL_EVERY}', f'--keep={KEEP}', '--sample-every=2',
                  '--eval-examples=64', f'--workdir={tmp_path / "run"}', f'--json={out}'])
  try:
    log = p.communicate(timeout=900)[0]
  except subprocess.TimeoutExpired:
    p.kill()
    p.communicate()
    raise
  assert p.returncode == 0, log[-4000:]
  res = json.loads(out.read_text())
  saved = list(range(CKPT_EVERY, STEPS + 1, CKPT_EVERY))
  latest = set(saved[-KEEP:])
  evals = {e['step']: e['ema_top1'] for e in res['evals']}          # best: by EMA top-1
  assert sorted(evals) == list(range(EVAL_EVERY, STEPS, EVAL_EVERY)) + [STEPS]
  best = {s for s, v in evals.items() if v == max(evals.values())}
  final = set(res['final_ckpts'])
  extra = final - latest
  assert latest <= final and len(extra) <= 1, res['final_ckpts']
  assert extra <= best if extra else best & latest, (res['final_ckpts'], evals)
  for s in res['samples']:
    assert len(s['ckpts']) <= KEEP + 2, s
  summary = res['summary']
  assert summary['half']['step'] >= STEPS // 2 - 2 and summary['last']['step'] == STEPS
  assert summary['rss_growth_second_half_mb'] < RSS_BOUND_MB, summary
