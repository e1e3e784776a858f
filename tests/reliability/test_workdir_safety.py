"""Workdir safety: a training run (``main.py``, train and eval, preparing its dataset) writes only
inside ``--workdir`` and the TFDS ``data_dir`` it was given; HOME, TMPDIR and the working
directory all point into one temporary root whose file listing is compared before and after."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.train_helpers import ROOT, embedded_data_dir

pytestmark = pytest.mark.xdist_group('reliability')


def _listing(root) -> dict[str, int]:
  """``{relative path: size}`` of every file and directory under ``root`` (directories: -1)."""
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for d in dirnames:
      out[os.path.relpath(os.path.join(dirpath, d), root)] = -1
    for f in filenames:
      p = os.path.join(dirpath, f)
      out[os.path.relpath(p, root)] = os.path.getsize(p)
  return out


def test_a_run_writes_only_to_its_workdir_and_data_dir(tmp_path):
  root = tmp_path
  for d in ('home', 'tmp', 'cwd'):
    (root / d).mkdir()
  (root / 'home' / '.profile').write_text('mine')
  (root / 'cwd' / 'notes.txt').write_text('mine')
  workdir, data_dir = root / 'work', root / 'tfds'
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(('XDG_', 'KERAS_', 'MPLCONFIGDIR', 'TFDS_', 'TEST_TMPDIR'))}
  env.update(HOME=str(root / 'home'), TMPDIR=str(root / 'tmp'), PYTHONPATH=str(ROOT))
  # Test-harness paths outside the root, deliberately not checked: the persistent XLA compilation
  # cache that tests/conftest.py sets for every test process (a user sets it or not), and the
  # repo's prepared dataset that the tiny config file locks while it loads.
  env['JAX_COMPILATION_CACHE_DIR'] = os.environ['JAX_COMPILATION_CACHE_DIR']
  embedded_data_dir()
  before = _listing(root)
  cmd = [sys.executable, str(ROOT / 'main.py'),
         f'--config={ROOT}/tests/reliability/tiny_config.py', f'--workdir={workdir}',
         '--mode=train_and_eval', '--config.num_train_steps=4',
         '--config.checkpoint.every_steps=2', '--config.checkpoint.keep=1',
         f'--config.data.data_dir={data_dir}']   # prepared there on first use
  p = subprocess.run(cmd, cwd=root / 'cwd', env=env, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True, timeout=600)
  assert p.returncode == 0, p.stdout[-4000:]
  after = _listing(root)
  # The one exception, documented (ghostnets_jax.layers.onednn): the CPU convolution extension,
  # compiled on first use into the user's cache directory; new files only, nothing changed.
  cache = [k for k in after if k.startswith('home/.cache')]
  assert all(k not in before for k in cache), cache
  assert {k for k in cache if after[k] >= 0} <= {k for k in cache if k.startswith(
      'home/.cache/ghostnets_jax/onednn_conv-') and k.endswith('.so')}, cache
  elsewhere = {k: v for k, v in after.items()
               if before.get(k) != v and k not in ('work', 'tfds')
               and not k.startswith(('work/', 'tfds/', 'home/.cache'))}
  assert not elsewhere, f'written outside --workdir and data_dir: {sorted(elsewhere)}'
  assert {k for k in before if k not in after} == set()        # nothing removed either
  written = os.listdir(workdir)
  assert {'checkpoints', 'config.json', 'resolved_config.json', 'run.json'} <= set(written)
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['4']
  assert any(k.startswith('tfds/fashion_mnist_embedded/1.0.0/') for k in after)
