"""Exact resume after ``kill -9`` at a seeded step once a checkpoint is committed on disk (on 1
and on 8 simulated devices, where the batch and the FSDP state are checked to be split), and
SIGTERM preemption: a checkpoint at the current step, a clean exit, and a restart from exactly
that step. Each run is ``main.py`` in a subprocess with the same command as the uninterrupted
baseline."""
from __future__ import annotations

import base64
import json
import os
import random
import re
import signal
import subprocess
import time

import pytest

from tests.reliability.conftest import (FSDP_MIN_SIZE, STEP_LINE, assert_same_state, devices_env,
                                        main_cmd, mesh_overrides, restore, run_main, run_until_step)
from tests.train_helpers import run_python

pytestmark = pytest.mark.xdist_group('reliability')
RESUMED = re.compile(r'resumed at step (\d+) \(input position (\{.*?\})\)')
BATCH = re.compile(r'input batch: (.*)')


def committed_steps(workdir: str) -> list[int]:
  """Steps orbax has committed: it writes a step into a temporary directory and renames it to
  the bare step number (with its ``_CHECKPOINT_METADATA``) when complete."""
  d = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(d):
    return []
  return sorted(int(s) for s in os.listdir(d)
                if s.isdigit() and os.path.exists(os.path.join(d, s, '_CHECKPOINT_METADATA')))


def kill_after_commit(workdir: str, step: int, devices: int, timeout: float = 600
                      ) -> tuple[list[int], str]:
  """Runs ``main.py``; once it has logged training step ``step`` and a checkpoint is committed
  on disk, SIGKILLs it. Returns (the steps committed when the kill was sent, the log)."""
  p = run_python(main_cmd(workdir, *mesh_overrides(devices)), env=devices_env(devices))
  lines, seen = [], []
  try:
    for line in p.stdout:
      lines.append(line)
      m = STEP_LINE.search(line)
      if m and int(m.group(1)) >= step:
        break
    deadline = time.time() + timeout
    while not seen and p.poll() is None and time.time() < deadline:
      seen = committed_steps(workdir)
      time.sleep(0.01)
    p.kill()
    lines.append(p.communicate(timeout=timeout)[0])
  except subprocess.TimeoutExpired:
    p.kill()
    raise
  log = ''.join(lines)
  assert p.returncode == -signal.SIGKILL and seen, (
      f'no kill after a committed checkpoint (step {step}, committed {seen}, rc {p.returncode})\n'
      f'{log[-3000:]}')
  return seen, log


def saved_shardings(step_dir: str) -> dict[str, tuple]:
  """``{leaf path: partition spec}`` of a saved state, from orbax's ``_sharding`` file (keys
  are base64 of the dotted leaf path), plus the mesh every leaf was saved on."""
  with open(os.path.join(step_dir, 'state', '_sharding')) as f:
    raw = json.load(f)
  out = {}
  for k, v in raw.items():
    s = json.loads(v)
    assert s['sharding_type'] == 'NamedSharding', s
    out[base64.b64decode(k).decode()] = (tuple(s['shape']), tuple(s['axis_names']),
                                         tuple(s['partition_spec']))
  return out


def expected_spec(shape: tuple[int, ...], fsdp: int) -> tuple:
  """The FSDP rule: arrays of >= FSDP_MIN_SIZE elements split their largest dimension divisible
  by the fsdp size (the first such on ties) over ``fsdp``; smaller ones are replicated."""
  size = 1
  for d in shape:
    size *= d
  if size < FSDP_MIN_SIZE:
    return ()
  dims = [d for d in sorted(range(len(shape)), key=lambda i: -shape[i]) if shape[d] % fsdp == 0]
  if not dims:
    return ()
  return tuple('fsdp' if i == dims[0] else None for i in range(len(shape)))


def assert_sharded_on_8_devices(workdir: str, log: str, state: dict) -> None:
  """The batch split over all 8 devices (4 of the 32 rows each), every saved state array on the
  (data 2, fsdp 4) mesh with the FSDP rule's split, and many arrays actually split."""
  batch = BATCH.search(log)
  assert batch, log[-3000:]
  for part in batch.group(1).split('; '):
    assert re.search(r"split (?:P|PartitionSpec)\(\('data', 'fsdp'\),\) over 8 devices, "
                     r"4 rows on each", part), part
  with open(os.path.join(workdir, 'resolved_config.json')) as f:
    assert json.load(f)['mesh'] == {'data': 2, 'fsdp': 4}
  saved = saved_shardings(os.path.join(workdir, 'checkpoints', '6'))
  shapes = {_dotted(k): v.shape for k, v in state.items()}
  assert saved.keys() == shapes.keys()
  split = 0
  for path, (mesh, axes, spec) in saved.items():
    assert mesh == (2, 4) and axes == ('data', 'fsdp'), (path, mesh, axes)
    assert spec == expected_spec(shapes[path], 4), (path, shapes[path], spec)
    split += 'fsdp' in spec
  assert split >= 12, split        # 18 of the tiny model's 286 state arrays


def _dotted(keystr: str) -> str:
  """``.opt_state[1][0].trace['conv_stem']`` (a restored leaf) -> ``opt_state.1.0.trace.conv_stem``
  (orbax's name of the saved leaf)."""
  return '.'.join(a or b or c for a, b, c in re.findall(r"\['([^']*)'\]|\.(\w+)|\[(\d+)\]", keystr))


@pytest.mark.parametrize('devices', [1, 8])
def test_sigkill_after_a_committed_checkpoint_then_same_command_resumes_bit_identical(
    devices, request, tmp_path):
  """Killed at a seeded step (3 or 4 of 6) once a checkpoint is on disk; the same command
  resumes from the newest committed step (> 0) and ends bit-identical to the uninterrupted run
  (on 8 devices: the 8-device run, with the batch and the FSDP state checked to be split)."""
  baseline = request.getfixturevalue('baseline' if devices == 1 else 'baseline8')
  kill_at = random.Random(f'sigkill-{devices}').randint(3, 4)
  workdir = str(tmp_path / 'run')
  seen, first_log = kill_after_commit(workdir, kill_at, devices)
  committed = committed_steps(workdir)             # saves may have committed before the kill landed
  assert set(seen) <= set(committed) and committed[-1] <= 6
  rc, log = run_main(workdir, devices=devices)       # the same command again
  assert rc == 0, log[-4000:]
  assert f'on {devices} devices' in log, log[-3000:]
  m = RESUMED.search(log)
  assert m and int(m.group(1)) == committed[-1] >= seen[-1] > 0, (seen, committed, log[-3000:])
  assert not re.search(rf'step {committed[-1]}/6 ', log)             # no step is repeated
  # params, optimizer state, EMA (params + batch_stats), BN statistics, the step (which seeds
  # every RNG: dropout keys are fold_in(seed, step)) and the input position, bit for bit.
  step, got, data = restore(workdir)
  step_ref, want, data_ref = restore(baseline)
  assert step == step_ref == 6 and data == data_ref and data['batch'] == 6
  assert any("opt_state" in k for k in want) and any("ema" in k for k in want)
  assert any("batch_stats" in k for k in want)
  assert_same_state(got, want)
  if devices == 8:
    assert_sharded_on_8_devices(workdir, first_log, got)   # the killed run's first batch
    assert_sharded_on_8_devices(workdir, log, got)         # the resumed run's batch and saves


def test_sigterm_checkpoints_the_current_step_exits_cleanly_and_resumes_there(baseline, tmp_path):
  stop_at = random.Random('sigterm').randint(2, 4)
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
