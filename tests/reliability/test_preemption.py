"""Exact resume after ``kill -9`` at a random step (on 1 and on 8 simulated devices), and SIGTERM
preemption: a checkpoint at the current step, a clean exit, and a restart from exactly that step.
Each run is ``main.py`` in a subprocess with the same command as the uninterrupted baseline."""
from __future__ import annotations

import os
import random
import re
import signal

import pytest

from tests.reliability.conftest import assert_same_state, restore, run_main, run_until_step

pytestmark = pytest.mark.xdist_group('reliability')
RESUMED = re.compile(r'resumed at step (\d+) \(input position (\{.*?\})\)')


@pytest.mark.parametrize('devices', [1, 8])
def test_sigkill_at_a_random_step_then_same_command_ends_bit_identical(devices, request, tmp_path):
  """Also on 8 simulated devices (a data-parallel mesh), against the 8-device baseline."""
  baseline = request.getfixturevalue('baseline' if devices == 1 else 'baseline8')
  kill_at = random.SystemRandom().randint(2, 5)
  workdir = str(tmp_path / 'run')
  rc, log = run_until_step(workdir, kill_at, signal.SIGKILL, devices=devices)
  assert rc == -signal.SIGKILL, f'kill at step {kill_at}: rc {rc}\n{log[-3000:]}'
  # Saves are async: the kill may land before even step 1's save is committed (orbax renames a
  # step's temporary directory when it is complete), more often on 8 devices.
  ckpts = os.path.join(workdir, 'checkpoints')
  committed = sorted(int(d) for d in os.listdir(ckpts) if d.isdigit()) if os.path.isdir(ckpts) else []
  rc, log = run_main(workdir, devices=devices)                 # the same command again
  assert rc == 0, log[-4000:]
  assert f'on {devices} devices' in log, log[-3000:]
  m = RESUMED.search(log)
  if committed:          # resumes at the newest committed step
    assert m and int(m.group(1)) == committed[-1] <= kill_at, (committed, kill_at, log[-3000:])
  else:                  # nothing committed: starts afresh, as the first run did
    assert not m, f'killed at step {kill_at} with no checkpoint committed, yet: {m.group(0)}'
  # params, optimizer state, EMA (params + batch_stats), BN statistics, the step (which seeds
  # every RNG: dropout keys are fold_in(seed, step)) and the input position, bit for bit.
  step, got, data = restore(workdir)
  step_ref, want, data_ref = restore(baseline)
  assert step == step_ref == 6 and data == data_ref and data['batch'] == 6
  assert any("opt_state" in k for k in want) and any("ema" in k for k in want)
  assert any("batch_stats" in k for k in want)
  assert_same_state(got, want)


def test_sigterm_checkpoints_the_current_step_exits_cleanly_and_resumes_there(baseline, tmp_path):
  stop_at = random.SystemRandom().randint(2, 4)
  workdir = str(tmp_path / 'run')
  rc, log = run_until_step(workdir, stop_at, signal.SIGTERM)
  assert rc == 0, f'SIGTERM at step {stop_at}: rc {rc}\n{log[-3000:]}'
  m = re.search(r'stopped at step (\d+) on a signal', log)
  assert m, log[-3000:]
  stopped = int(m.group(1))
  assert stopped in (stop_at, stop_at + 1), (stopped, stop_at)   # the step in flight finishes
  step, got, data = restore(workdir)
  assert step == stopped and data['batch'] == stopped          # the checkpoint of that step
  _, want, data_ref = restore(baseline, stopped)
  assert data == data_ref
  assert_same_state(got, want)
  rc, log = run_main(workdir)
  assert rc == 0, log[-4000:]
  m = RESUMED.search(log)
  assert m and int(m.group(1)) == stopped, log[-3000:]
  assert not re.search(rf'step {stopped}/6 ', log)               # no step is repeated
  step, got, data = restore(workdir)
  step_ref, want, data_ref = restore(baseline)
  assert step == step_ref == 6 and data == data_ref
  assert_same_state(got, want)
