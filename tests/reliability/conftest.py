"""Shared by the fault-injection tests: one uninterrupted baseline run of ``main.py`` on the tiny
config (6 steps, a checkpoint after every step), made once per test session."""
from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess

import pytest

from tests.reliability.tiny_config import RUN
from tests.train_helpers import embedded_data_dir, flat, run_python, tiny_config

CONFIG = 'tests/reliability/tiny_config.py'
STEP_LINE = re.compile(r'step (\d+)/\d+ ')


def main_cmd(workdir: str, *overrides: str) -> list[str]:
  return ['main.py', f'--config={CONFIG}', f'--workdir={workdir}', '--mode=train', *overrides]


def devices_env(devices: int) -> dict | None:
  """The environment of a ``main.py`` run on ``devices`` simulated CPU devices."""
  return None if devices == 1 else {'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}


# Multi-device runs use a (data 2, fsdp 4) mesh with every state array of >= FSDP_MIN_SIZE
# elements split over ``fsdp`` (the tiny model has none above the default 2**14).
FSDP_MIN_SIZE = 256


def mesh_overrides(devices: int) -> tuple[str, ...]:
  if devices == 1:
    return ()
  return (f'--config.sharding.mesh_shape=(2,{devices // 2})',
          f'--config.sharding.fsdp_min_size={FSDP_MIN_SIZE}')


def run_main(workdir: str, *overrides: str, timeout: int = 600, devices: int = 1) -> tuple[int, str]:
  """Runs ``main.py`` to the end: (returncode, log)."""
  p = run_python(main_cmd(workdir, *mesh_overrides(devices), *overrides), env=devices_env(devices))
  try:
    log = p.communicate(timeout=timeout)[0]
  except subprocess.TimeoutExpired:
    p.kill()                  # no orphan run left behind
    p.communicate()
    raise
  return p.returncode, log


def run_until_step(workdir: str, step: int, sig: int, timeout: int = 600,
                   devices: int = 1) -> tuple[int, str]:
  """Runs ``main.py`` and sends ``sig`` as soon as it logs training step ``step``."""
  p = run_python(main_cmd(workdir, *mesh_overrides(devices)), env=devices_env(devices))
  lines = []
  try:
    for line in p.stdout:
      lines.append(line)
      m = STEP_LINE.search(line)
      if m and int(m.group(1)) >= step:
        p.send_signal(sig)
        break
    lines.append(p.communicate(timeout=timeout)[0])
  except subprocess.TimeoutExpired:
    p.kill()
    raise
  return p.returncode, ''.join(lines)


def restore(workdir: str, which='latest'):
  """(step, {leaf path: array}, input position) of a checkpoint of the tiny run."""
  from ghostnets_jax.train import experiment
  exp = experiment.build(tiny_config(**RUN), workdir, train=False)
  try:
    step, state, data = exp.restore(which)
  finally:
    exp.checkpointer.close()
  return step, flat(state), data


@functools.lru_cache(maxsize=None)
def _baseline(root: str, devices: int = 1) -> str:
  embedded_data_dir()
  workdir = os.path.join(root, 'baseline' if devices == 1 else f'baseline_{devices}dev')
  rc, log = run_main(workdir, devices=devices)
  assert rc == 0, log[-4000:]
  assert f'on {devices} devices' in log, log[-4000:]
  return workdir


@pytest.fixture(scope='session')
def reliability_root(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp('reliability'))


@pytest.fixture(scope='session')
def baseline(reliability_root) -> str:
  """The workdir of the uninterrupted run (checkpoints at steps 1..6)."""
  return _baseline(reliability_root)


@pytest.fixture(scope='session')
def baseline2(reliability_root) -> str:
  """The same run on 2 simulated devices of one process: the same mesh and kernels as 2 processes
  of one device each (a single CPU device runs oneDNN's convolutions, several run XLA's)."""
  return _baseline(reliability_root, 2)


@pytest.fixture(scope='session')
def baseline8(reliability_root) -> str:
  """The same run on 8 simulated devices (a data 2 x fsdp 4 mesh, :func:`mesh_overrides`)."""
  return _baseline(reliability_root, 8)


def assert_same_state(got: dict, want: dict) -> None:
  assert got.keys() == want.keys()
  for k in want:
    assert got[k].dtype == want[k].dtype, k
    assert got[k].tobytes() == want[k].tobytes(), f'{k} differs'


def copy_run(src: str, dst) -> str:
  shutil.copytree(src, dst)
  return str(dst)


def files(d: str) -> dict[str, bytes]:
  """``{relative path: contents}`` of every file under ``d``."""
  return {os.path.relpath(f, d): open(f, 'rb').read()
          for f in glob.glob(os.path.join(d, '**', '*'), recursive=True) if os.path.isfile(f)}
