"""Divergence: a NaN loss/gradient (NaN images injected at chosen steps) stops training with the
step number and the last good checkpoint intact (``on_nonfinite='stop'``), or the step is skipped,
changes nothing and is counted (``'skip'``)."""
from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
import pytest

from tests.reliability.conftest import assert_same_state, restore
from tests.reliability.tiny_config import RUN
from tests.train_helpers import tiny_config

pytestmark = pytest.mark.xdist_group('reliability')


@pytest.fixture
def poison_steps(monkeypatch):
  """``poison_steps(*steps)``: the training steps (1-based) whose images become NaN."""
  from ghostnets_jax.train import step as step_lib
  real = step_lib.make_train_step

  def install(*steps):
    def make(*args, **kwargs):
      fn = real(*args, **kwargs)

      def poisoned(state, batch, teacher_vars=None):
        bad = jnp.isin(state.step + 1, jnp.asarray(steps))
        return fn(state, {**batch, 'image': jnp.where(bad, jnp.nan, batch['image'])}, teacher_vars)
      return poisoned
    monkeypatch.setattr(step_lib, 'make_train_step', make)
  return install


def _all_finite(flat: dict) -> bool:
  return all(np.all(np.isfinite(v)) for v in flat.values() if v.dtype.kind == 'f')


def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(baseline, tmp_path,
                                                                     poison_steps):
  from ghostnets_jax.train import trainer
  poison_steps(4)
  workdir = str(tmp_path / 'run')
  with pytest.raises(FloatingPointError, match=r'non-finite loss or gradient at step 4 .*the last '
                     r'good checkpoint \(step 3\) is kept'):
    trainer.train_and_evaluate(tiny_config(**RUN), workdir, mode='train')
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['1', '2', '3']
  step, got, data = restore(workdir)
  assert step == 3 and data['batch'] == 3 and _all_finite(got)
  assert_same_state(got, restore(baseline, 3)[1])


def test_skip_mode_skips_counts_and_changes_nothing_but_the_step(baseline, tmp_path, poison_steps):
  from ghostnets_jax.train import trainer
  poison_steps(3, 5)
  workdir = str(tmp_path / 'run')
  trainer.train_and_evaluate(tiny_config(**RUN, on_nonfinite='skip'), workdir, mode='train')
  _, s2, d2 = restore(workdir, 2)
  _, s3, d3 = restore(workdir, 3)
  step, s6, d6 = restore(workdir)
  assert 'nonfinite_skipped' not in d2 and d3['nonfinite_skipped'] == 1
  assert step == 6 and d6['nonfinite_skipped'] == 2 and d6['batch'] == 6 and _all_finite(s6)
  assert_same_state(s2, restore(baseline, 2)[1])
  assert s3['.step'] == 3
  assert_same_state({k: v for k, v in s3.items() if k != '.step'},
                    {k: v for k, v in s2.items() if k != '.step'})   # step 3 changed nothing else


def test_on_nonfinite_rejects_unknown_values(tmp_path):
  from ghostnets_jax.train import trainer
  with pytest.raises(ValueError, match="config.on_nonfinite must be 'stop' or 'skip', got 'ignore'"):
    trainer.train_and_evaluate(tiny_config(**RUN, on_nonfinite='ignore'), str(tmp_path), mode='train')
