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


def _value_files(step_dir: str) -> list[str]:
  """The per-process data files: every array value too large to be inlined in the B-tree (over
  1 KiB) is stored in one of them. Which ones, and at what offset, depends on write timing."""
  return sorted(glob.glob(os.path.join(step_dir, 'state', 'ocdbt.process_*', 'd', '*')))


def _data_files(step_dir: str) -> list[str]:
  """Every data file of the array store: the value files and the root B-tree nodes (``state/d``,
  which hold the small arrays inline and point into the value files; always read)."""
  return _value_files(step_dir) + sorted(glob.glob(os.path.join(step_dir, 'state', 'd', '*')))


def truncate(step_dir):       # every data file cut in half (a copy or write that stopped early)
  for f in _data_files(step_dir):
    os.truncate(f, os.path.getsize(f) // 2)


def empty(step_dir):          # every file of the step zero bytes long
  for f in glob.glob(os.path.join(step_dir, '**', '*'), recursive=True):
    if os.path.isfile(f):
      os.truncate(f, 0)


def garbage(step_dir):        # same size, random bytes
  rng = np.random.RandomState(0)
  for f in _data_files(step_dir):
    with open(f, 'r+b') as fh:
      fh.write(rng.bytes(os.path.getsize(f)))


def bit_flip(step_dir):
  """One bit in every 997th byte of every value file: each stored value (over 1 KiB) gets at least
  one, while sizes and the B-tree stay valid."""
  for f in _value_files(step_dir):
    b = bytearray(open(f, 'rb').read())
    for i in range(500 % max(len(b), 1), len(b), 997):
      b[i] ^= 0x10
    open(f, 'wb').write(b)


def rewrite(step_dir):
  """One array's values changed through the store itself: every file, header and compressed chunk
  is valid and orbax restores it without an error; only the save-time fingerprint tells."""
  import tensorstore as ts
  arr = ts.open({'driver': 'zarr', 'kvstore': {
      'driver': 'ocdbt', 'base': f'file://{os.path.join(step_dir, "state")}/',
      'path': 'params.classifier.bias/'}}).result()
  arr.write(arr.read().result() + np.float32(1e-3)).result()


@pytest.mark.parametrize('damage', [truncate, empty, garbage, bit_flip, rewrite],
                         ids=lambda f: f.__name__)
def test_damaged_latest_is_named_moved_aside_and_the_previous_restored(baseline, tmp_path, damage,
                                                                        caplog):
  from ghostnets_jax.train import experiment
  workdir = copy_run(baseline, tmp_path / 'run')
  ckpts = os.path.join(workdir, 'checkpoints')
  damage(os.path.join(ckpts, '6'))
  damaged = files(os.path.join(ckpts, '6'))
  good = {s: files(os.path.join(ckpts, str(s))) for s in range(1, 6)}
  with caplog.at_level(logging.INFO):
    exp = experiment.build(tiny_config(**RUN), workdir, train=True)
    step, state, data = exp.restore('latest', quarantine=True)
  exp.checkpointer.close()
  msg = caplog.text
  unreadable = f'checkpoint {ckpts}/6 cannot be read ('
  changed = f'checkpoint {ckpts}/6 does not match the fingerprint written when it was saved: '
  if damage is rewrite:
    assert changed + "1 arrays differ, first .params['classifier']['bias']" in msg, msg
  else:
    assert unreadable in msg or changed in msg, msg
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
  from ghostnets_jax.train import experiment
  from ghostnets_jax.train.checkpoint import CorruptCheckpointError
  workdir = copy_run(baseline, tmp_path / 'run')
  ckpts = os.path.join(workdir, 'checkpoints')
  garbage(os.path.join(ckpts, '3'))
  exp = experiment.build(tiny_config(**RUN), workdir, train=False)
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


def test_reading_weights_of_a_damaged_step_names_it(baseline, tmp_path):
  from ghostnets_jax.train.checkpoint import CorruptCheckpointError, restore_variables
  workdir = copy_run(baseline, tmp_path / 'run')
  step6 = os.path.join(workdir, 'checkpoints', '6')
  truncate(step6)
  with pytest.raises(CorruptCheckpointError, match=f'checkpoint {step6} cannot be read'):
    restore_variables(step6)
  with pytest.raises(CorruptCheckpointError, match=f'checkpoint {workdir} step 6 cannot be read'):
    restore_variables(workdir)
  assert restore_variables(workdir, 5)['params']        # the others still load


def test_a_rewritten_array_is_caught_by_the_run_reader_too(baseline, tmp_path):
  """``load_run`` / ``restore_variables`` (no training code) compare the weights with the
  fingerprint saved with them: a value changed through the store itself is named."""
  from ghostnets_jax import load_run
  from ghostnets_jax.convert import CorruptCheckpointError
  workdir = copy_run(baseline, tmp_path / 'run')
  rewrite(os.path.join(workdir, 'checkpoints', '6'))
  with pytest.raises(CorruptCheckpointError, match=r"step 6 does not match the fingerprint .*"
                     r"first \['params'\]\['classifier'\]\['bias'\]"):
    load_run(workdir)
  model, variables = load_run(workdir, step=5, weights='raw')   # the others still load
  assert model.num_classes == variables['params']['classifier']['bias'].shape[0] == 10
