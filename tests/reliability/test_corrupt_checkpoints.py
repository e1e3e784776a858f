"""Damaged checkpoints: a truncated, emptied, garbage or bit-flipped latest checkpoint is detected,
named with the reason, moved aside (not deleted) and the previous good one restored; a run resumed
from it ends bit-identical to the uninterrupted one. An interrupted save is never taken as a
checkpoint."""
from __future__ import annotations

import glob
import logging
import os
import shutil

import numpy as np
import pytest

from tests.reliability.conftest import assert_same_state, copy_run, files, restore
from tests.reliability.tiny_config import RUN
from tests.train_helpers import tiny_config

pytestmark = pytest.mark.xdist_group('reliability')


def _array_files(step_dir: str) -> list[str]:
  return sorted(glob.glob(os.path.join(step_dir, 'state', 'ocdbt.process_0', 'd', '*')))


def _largest_array_file(step_dir: str) -> str:
  return max(_array_files(step_dir), key=os.path.getsize)


def truncate(step_dir):       # every array file cut in half (a copy or write that stopped early)
  for f in _array_files(step_dir):
    os.truncate(f, os.path.getsize(f) // 2)


def empty(step_dir):          # every file of the step zero bytes long
  for f in glob.glob(os.path.join(step_dir, '**', '*'), recursive=True):
    if os.path.isfile(f):
      os.truncate(f, 0)


def garbage(step_dir):        # same size, random bytes
  f = _largest_array_file(step_dir)
  with open(f, 'r+b') as fh:
    fh.write(np.random.RandomState(0).bytes(os.path.getsize(f)))


def bit_flip(step_dir):
  """One bit in every 997th byte of the largest array file: the size and every header stay valid
  (orbax alone often restores such a file without an error, with other values)."""
  f = _largest_array_file(step_dir)
  b = bytearray(open(f, 'rb').read())
  for i in range(500, len(b), 997):
    b[i] ^= 0x10
  open(f, 'wb').write(b)


@pytest.mark.parametrize('damage', [truncate, empty, garbage, bit_flip], ids=lambda f: f.__name__)
def test_damaged_latest_is_named_moved_aside_and_the_previous_restored(baseline, tmp_path, damage,
                                                                        caplog):
  from ghostnets_jax.train import trainer
  workdir = copy_run(baseline, tmp_path / 'run')
  ckpts = os.path.join(workdir, 'checkpoints')
  damage(os.path.join(ckpts, '6'))
  damaged = files(os.path.join(ckpts, '6'))
  good = {s: files(os.path.join(ckpts, str(s))) for s in range(1, 6)}
  with caplog.at_level(logging.INFO):
    exp = trainer.build(tiny_config(**RUN), workdir, train=True)
    step, state, data = exp.restore('latest', quarantine=True)
  exp.checkpointer.close()
  msg = caplog.text
  assert (f'checkpoint {ckpts}/6 cannot be read' in msg
          or f'checkpoint {ckpts}/6 does not match the fingerprint' in msg), msg
  assert 'restored step 5' in msg and f'{ckpts}/6.corrupt' in msg, msg
  assert step == 5 and data['batch'] == 5
  from tests.train_helpers import flat
  assert_same_state(flat(state), restore(baseline, 5)[1])
  assert files(os.path.join(ckpts, '6.corrupt')) == damaged       # kept as it was
  for s, kept in good.items():                                     # good ones untouched
    assert files(os.path.join(ckpts, str(s))) == kept


def test_resume_past_a_damaged_latest_ends_bit_identical(baseline, tmp_path):
  from ghostnets_jax.train import trainer
  workdir = copy_run(baseline, tmp_path / 'run')
  ckpts = os.path.join(workdir, 'checkpoints')
  for s in (5, 6):
    bit_flip(os.path.join(ckpts, str(s)))
  trainer.train_and_evaluate(tiny_config(**RUN), workdir, mode='train')   # resumes at 4
  assert sorted(os.listdir(ckpts)) == ['1', '2', '3', '4', '5', '5.corrupt', '6', '6.corrupt']
  step, got, data = restore(workdir)
  step_ref, want, data_ref = restore(baseline)
  assert step == step_ref == 6 and data == data_ref
  assert_same_state(got, want)


def test_all_damaged_or_a_damaged_named_step_raise_and_change_nothing(baseline, tmp_path):
  from ghostnets_jax.train import trainer
  from ghostnets_jax.train.checkpoint import CorruptCheckpointError
  workdir = copy_run(baseline, tmp_path / 'run')
  ckpts = os.path.join(workdir, 'checkpoints')
  garbage(os.path.join(ckpts, '3'))
  exp = trainer.build(tiny_config(**RUN), workdir, train=False)
  with pytest.raises(CorruptCheckpointError, match=f'checkpoint {ckpts}/3 cannot be read'):
    exp.restore(3)
  for s in range(1, 7):
    if s != 3:
      empty(os.path.join(ckpts, str(s)))
  before = files(ckpts)
  with pytest.raises(CorruptCheckpointError, match='no readable checkpoint .* every step is '
                     r'damaged \(none was changed or deleted\)') as e:
    exp.restore('latest', quarantine=True)
  exp.checkpointer.close()
  assert all(f'{ckpts}/{s} ' in str(e.value) for s in range(1, 7))
  assert files(ckpts) == before


def test_an_interrupted_save_is_not_taken_as_a_checkpoint(baseline, tmp_path):
  """orbax writes a step into ``<step>.orbax-checkpoint-tmp-*`` and renames it when complete: a
  save killed before the rename (here: a full copy of step 6 under the temporary name) is
  ignored and the newest committed step is restored."""
  workdir = copy_run(baseline, tmp_path / 'run')
  ckpts = os.path.join(workdir, 'checkpoints')
  shutil.copytree(os.path.join(ckpts, '6'), os.path.join(ckpts, '7.orbax-checkpoint-tmp-1'))
  step, got, _ = restore(workdir)
  assert step == 6
  assert_same_state(got, restore(baseline, 6)[1])
