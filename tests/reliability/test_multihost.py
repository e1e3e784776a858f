"""Two processes started the way SLURM starts them (``srun``'s variables, no coordinator flags):
``distributed.initialize='auto'`` finds the cluster through JAX's own detection and they train as
one run. A SIGTERM to one of them stops both at the same step, both save it and exit 0, and the
rerun resumes there and ends bit-identical to the uninterrupted two-process run."""
from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.reliability.conftest import CONFIG, assert_same_state, restore
from tests.reliability.tiny_config import RUN
from tests.train_helpers import ROOT, embedded_data_dir, max_rel_diff

pytestmark = pytest.mark.xdist_group('infra')   # one worker for test_gcs and this (baselines)
STEPS = RUN['num_train_steps']


def slurm_job_id() -> int:
  """A job id whose coordinator port (JAX: ``61440 + job_id % 4096``) is free here."""
  while True:
    job = random.randrange(4096)
    with socket.socket() as s:
      try:
        s.bind(('127.0.0.1', 61440 + job))
        return job
      except OSError:
        continue


def start(workdir: str, logdir, *overrides: str, explicit: bool = False
          ) -> list[tuple[subprocess.Popen, str]]:
  """Both tasks of a 2-task SLURM step on this node (or, ``explicit``, two processes given the
  coordinator flags instead); their output goes to ``logdir/task<i>.log``."""
  job = slurm_job_id()
  procs = []
  for i in range(2):
    if explicit:
      env = dict(os.environ, PYTHONPATH=str(ROOT))
      flags = ['--config.distributed.initialize=always', '--config.distributed.num_processes=2',
               f'--config.distributed.coordinator_address=127.0.0.1:{61440 + job}',
               f'--config.distributed.process_id={i}']
    else:
      env = dict(os.environ, PYTHONPATH=str(ROOT), SLURM_JOB_ID=str(job), SLURM_NTASKS='2',
                 SLURM_PROCID=str(i), SLURM_LOCALID=str(i), SLURM_STEP_NODELIST='localhost')
      flags = []
    log = str(logdir / f'task{i}.log')
    with open(log, 'w') as f:
      procs.append((subprocess.Popen(
          [sys.executable, 'main.py', f'--config={CONFIG}', f'--workdir={workdir}', '--mode=train',
           *flags, *overrides], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT), log))
  return procs


def wait(procs, timeout: int = 900) -> list[str]:
  logs = []
  for p, log in procs:
    try:
      p.wait(timeout)
    except subprocess.TimeoutExpired:
      for q, _ in procs:
        q.kill()
      raise
    logs.append(open(log).read())
    assert p.returncode == 0, logs[-1][-4000:]
  return logs


def wait_for_line(log: str, pattern: str, proc: subprocess.Popen, timeout: int = 900) -> None:
  deadline = time.time() + timeout
  while not re.search(pattern, open(log).read()):
    assert proc.poll() is None, open(log).read()[-4000:]
    assert time.time() < deadline, f'no line {pattern!r} in {log}'
    time.sleep(0.2)


@pytest.fixture(scope='module')
def two_process_run(tmp_path_factory) -> str:
  """The uninterrupted run of the tiny config by 2 SLURM-style processes (1 device each)."""
  embedded_data_dir()
  root = tmp_path_factory.mktemp('multihost')
  workdir = str(root / 'run')
  logs = wait(start(workdir, root))
  for i, log in enumerate(logs):
    assert 'distributed: SlurmCluster (2 processes)' in log, log[-4000:]
    assert f'JAX process {i}/2, 2 devices' in log, log[-4000:]
    assert f'step {STEPS}/{STEPS}' in log
  return workdir


def test_slurm_tasks_auto_initialize_and_train_as_one_run(two_process_run, baseline2):
  step, got, data = restore(two_process_run)          # written by 2 processes, read by 1
  _, want, want_data = restore(baseline2)             # 1 process, 2 devices, same global batches
  assert step == STEPS and data == dict(want_data, local_batch=want_data['local_batch'] // 2)
  assert max_rel_diff(got, want) < 1e-5               # BN statistics over the global batch


def test_sigterm_to_one_process_stops_both_at_the_same_step(two_process_run, tmp_path):
  """Started with explicit coordinator flags this time (same processes and devices as the SLURM
  run, so the same numbers)."""
  workdir = str(tmp_path / 'run')
  rare = '--config.checkpoint.every_steps=1000'     # saves only on the stop (and the last step)
  procs = start(workdir, tmp_path, rare, explicit=True)
  (p0, _), (p1, log1) = procs
  wait_for_line(log1, r'step 2/\d+ ', p1)
  p1.send_signal(signal.SIGTERM)                      # process 0 gets no signal
  logs = wait(procs)
  stops = [re.findall(r'stopped at step (\d+) on a signal', log) for log in logs]
  assert stops[0] == stops[1] and len(stops[0]) == 1, stops
  stop = int(stops[0][0])
  assert 2 <= stop < STEPS, stop
  from ghostnets_jax.convert.orbax_run import saved_steps
  assert list(saved_steps(os.path.join(workdir, 'checkpoints'))) == [stop]

  logs = wait(start(workdir, tmp_path, rare, explicit=True))
  for log in logs:
    assert 'SlurmCluster' not in log and 'JAX process' in log
    assert f'resumed at step {stop} ' in log, log[-4000:]
  step, got, data = restore(workdir)
  want_step, want, want_data = restore(two_process_run)
  assert step == want_step == STEPS and data == want_data
  assert_same_state(got, want)
