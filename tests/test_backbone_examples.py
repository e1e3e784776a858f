"""The backbone examples run end to end: as a script, and in-process from checkpoint files."""
from __future__ import annotations

import functools
import importlib
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import serialization
from PIL import Image

import ghostnets_jax as gj
from tests.helpers import FAST_COMPILE, SMALL, model_and_variables

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / 'examples'


def _example(name: str):
  """Imports ``examples/<name>.py`` (the examples import their sibling ``common``)."""
  if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
  return importlib.import_module(name)


def _image_folder(path: pathlib.Path, n: int) -> pathlib.Path:
  path.mkdir()
  rng = np.random.RandomState(0)
  for i in range(n):
    Image.fromarray(rng.randint(0, 256, (72, 90, 3), np.uint8)).save(path / f'img{i}.png')
  return path


@pytest.mark.xdist_group('backbone_examples')
def test_extract_features_script_prints_dilated_shapes():
  env = {**os.environ, 'PYTHONPATH': str(ROOT)}
  proc = subprocess.run(
      [sys.executable, 'examples/extract_features.py', '--model', 'ghostnet_050', '--size', '64',
       '--batch', '1', '--strides', '8,16,32', '--output-stride', '16'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  out = proc.stdout
  assert 'random weights' in out
  assert 'level  8: (1, 8, 8, 20)' in out and 'level 16: (1, 4, 4, 56)' in out
  assert 'level 32: (1, 4, 4, 480)' in out and out.count('stride 16 ') == 2  # level 32 dilated
  assert 'level  2' not in out


@pytest.mark.xdist_group('backbone_examples')
def test_extract_features_from_checkpoint_files(tmp_path):
  """Torch-named .safetensors (via the converter) and flax .msgpack give the features of the
  variables they were written from, on images read from a folder."""
  extract = _example('extract_features')
  common = _example('common')
  name = 'ghostnet_050'
  model, variables = model_and_variables(name)
  from safetensors.numpy import save_file
  save_file(gj.convert.to_torch(name, variables), str(tmp_path / 'w.safetensors'))
  (tmp_path / 'w.msgpack').write_bytes(serialization.msgpack_serialize(jax.tree.map(np.asarray, variables)))
  folder = _image_folder(tmp_path / 'images', 2)
  x = common.load_images(common.image_paths([str(folder)]), name, SMALL)
  assert x.shape == (2, SMALL, SMALL, 3)
  want = jax.jit(functools.partial(model.apply, train=False, method='features'),
                 compiler_options=FAST_COMPILE)(variables, x)
  for ckpt in ('w.safetensors', 'w.msgpack'):
    got = extract.main(['--model', name, '--checkpoint', str(tmp_path / ckpt), '--size', str(SMALL),
                        '--images', str(folder)])
    assert sorted(got) == [2, 4, 8, 16, 32]
    for s in got:
      np.testing.assert_allclose(got[s], np.asarray(want[s]), rtol=1e-5, atol=1e-5)
  (tmp_path / 'bad.msgpack').write_bytes(serialization.msgpack_serialize({'weights': np.zeros(2)}))
  with pytest.raises(ValueError, match="expected a dict with 'params'"):
    extract.main(['--model', name, '--checkpoint', str(tmp_path / 'bad.msgpack'), '--size', '64'])
  with pytest.raises(FileNotFoundError, match='no such image'):
    extract.main(['--model', name, '--size', '64', '--images', str(tmp_path / 'missing.png')])


@pytest.mark.xdist_group('backbone_examples')
def test_multigrain_embeddings_find_the_copies_and_neighbours(tmp_path, capsys):
  emb = _example('multigrain_embeddings')
  demo = emb.main(['--size', str(SMALL), '--demo-size', '6', '--batch', '4'])
  np.testing.assert_allclose(np.linalg.norm(demo['gallery_embeddings'], axis=1), 1.0, atol=1e-5)
  assert demo['gallery_embeddings'].shape == (6, 2048) and demo['query_embeddings'].shape == (3, 2048)
  np.testing.assert_array_equal(demo['neighbours'][:, 0], demo['source'])  # each copy finds its original
  assert demo['recall@1'] == 1.0 and demo['mAP'] == 1.0 and demo['queries'] == 3
  folder = _image_folder(tmp_path / 'gallery', 3)
  res = emb.main(['--size', str(SMALL), '--batch', '4', '--gallery', str(folder), '--topk', '5'])
  assert res['neighbours'].shape == (3, 2)  # leave-one-out: the two others
  assert all(i not in row for i, row in enumerate(res['neighbours']))
  assert 'img0.png: img' in capsys.readouterr().out
