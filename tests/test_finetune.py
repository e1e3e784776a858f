"""Fine-tuning (configs/finetune.py): a tiny GhostNet fine-tuned from a PyTorch-format file on an
image folder made here (3 classes, 5 classes in the file), then from that run on the embedded
data (10 classes): new head size, trunk == checkpoint before the first step, frozen trunk / BN
bit-identical after training, the trunk lr multiplier, frozen BN = eval-mode BN, starting-weight
formats, config errors."""
from __future__ import annotations

import functools
import importlib
import os
import pathlib
import sys

import jax
import ml_collections
import numpy as np
import optax
import pytest

from configs import finetune as finetune_config
from ghostnets_jax import create_model
from ghostnets_jax.convert import to_torch
from ghostnets_jax.train import checkpoint, experiment, finetune, optim, trainer
from ghostnets_jax.train import state as state_lib
from tests.helpers import FAST_COMPILE, random_variables
from tests.train_helpers import TINY_CFGS, flat, tiny_config

pytestmark = pytest.mark.xdist_group('finetune')
EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / 'examples'
HEAD = "['params']['classifier']"   # flat() keys of {'params', 'batch_stats'} trees


def _example():
  if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
  return importlib.import_module('finetune_folder')


def _is_head(key: str) -> bool:
  return "['classifier']" in key


def ft_config(checkpoint: str, **overrides) -> ml_collections.ConfigDict:
  """configs/finetune.py:demo on the tiny GhostNet, the embedded data, a 3-step run."""
  c = tiny_config(finetune_config.get_config('demo'), **{
      'init.checkpoint': checkpoint, 'num_train_steps': 3, 'eval.batch_size': 100,
      'data.eval_split': 'test[:100]', 'checkpoint.async_save': False, **overrides})
  return c


def tiny_variables(num_classes: int, seed: int) -> dict:
  return _random('ghostnet_050', num_classes, seed)


def _random(name: str, num_classes: int, seed: int) -> dict:
  """Random variables of the tiny GhostNet layout (``TINY_CFGS``) of ``name``."""
  model = create_model(name, num_classes=num_classes).clone(cfgs=TINY_CFGS, head_chs=64)
  return jax.device_get(random_variables(model, size=32, seed=seed))


@functools.lru_cache(maxsize=None)
def folder_run(root: str) -> tuple[str, str, dict, dict]:
  """A 5-class PyTorch-format file fine-tuned on a 3-class image folder (train_and_eval):
  (file, workdir, file variables, eval metrics)."""
  from safetensors.numpy import save_file
  ex = _example()
  train_dir, eval_dir = ex.write_demo_folder(os.path.join(root, 'shoes'), per_class=6,
                                             eval_per_class=3)
  variables = tiny_variables(5, seed=1)
  path = os.path.join(root, 'tiny_5class.safetensors')
  save_file(to_torch('ghostnet_050', variables), path)
  workdir = os.path.join(root, 'folder_run')
  metrics = trainer.train_and_evaluate(folder_config(path, train_dir, eval_dir), workdir)
  return path, workdir, variables, metrics


def folder_config(path: str, train_dir: str, eval_dir: str) -> ml_collections.ConfigDict:
  return tiny_config(_example().folder_config('demo', path, train_dir, eval_dir), **{
      'batch_size': 6, 'num_train_steps': 3, 'eval.batch_size': 4,
      'checkpoint.async_save': False})


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  return str(tmp_path_factory.mktemp('finetune'))


def test_run_on_an_image_folder_from_a_pytorch_file(root):
  path, workdir, file_vars, metrics = folder_run(root)
  # the eval metrics, recomputed in numpy from the run's final weights on the eval images (3
  # classes x 3 PNGs in batches of 4: the 3 padded rows of the last batch must not count)
  folders = [os.path.join(root, 'shoes', split) for split in ('train', 'val')]
  exp = experiment.build(folder_config(path, *folders), workdir, train=False)
  exp.checkpointer.close()
  batches = list(exp.eval_batches()[0].as_numpy_iterator())
  images = np.concatenate([b['image'][b['mask'] == 1] for b in batches])
  labels = np.concatenate([b['label'][b['mask'] == 1] for b in batches])
  assert sum(len(b['mask']) for b in batches) == 12 and sorted(labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
  apply = jax.jit(functools.partial(exp.model.apply, train=False), compiler_options=FAST_COMPILE)
  logits = np.asarray(apply(checkpoint.restore_variables(workdir), images), np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  assert metrics['count'] == 9
  assert metrics['top1'] == pytest.approx(np.mean(logits.argmax(-1) == labels), abs=1e-6)
  assert metrics['top5'] == 1.0                         # 3 classes: always in the top 5
  assert metrics['loss'] == pytest.approx(-np.mean(logp[np.arange(9), labels]), rel=1e-4)
  run = flat(checkpoint.restore_variables(workdir))
  assert run[f"{HEAD}['kernel']"].shape == (64, 3)                    # 5 -> 3 classes
  assert file_vars['params']['classifier']['kernel'].shape == (64, 5)
  src = flat(file_vars)
  trunk_moved = [k for k in run if not _is_head(k) and 'params' in k
                 and not np.array_equal(run[k], src[k])]
  assert trunk_moved                                                  # the trunk trained too


def test_finetune_from_a_run_with_another_class_count(root, tmp_path):
  """From the 3-class run to the embedded data's 10 classes, BN frozen, trunk at 0.1x lr."""
  _, source, _, _ = folder_run(root)
  ckpt = flat(checkpoint.restore_variables(source))
  c = ft_config(source, **{'finetune.freeze_bn': True})
  exp = experiment.build(c, str(tmp_path))
  first = flat(exp.init_state().variables())                        # before the first step
  exp.checkpointer.close()
  assert first[f"{HEAD}['kernel']"].shape == (64, 10)
  assert first.keys() == ckpt.keys()
  for k in ckpt:
    if not _is_head(k):
      np.testing.assert_array_equal(first[k], ckpt[k], err_msg=k)
  metrics = trainer.train_and_evaluate(c, str(tmp_path))
  assert metrics['count'] == 100 and np.isfinite(metrics['loss'])
  end = flat(checkpoint.restore_variables(str(tmp_path)))
  assert end[f"{HEAD}['kernel']"].shape == (64, 10)
  assert not np.array_equal(end[f"{HEAD}['kernel']"], first[f"{HEAD}['kernel']"])
  stats = [k for k in ckpt if 'batch_stats' in k]
  assert stats and all(np.array_equal(end[k], ckpt[k]) for k in stats)   # freeze_bn
  assert any(not np.array_equal(end[k], ckpt[k]) for k in ckpt
             if 'params' in k and not _is_head(k))                         # trunk trains


def test_frozen_trunk_is_bit_identical_and_the_head_trains(root, tmp_path):
  _, source, _, _ = folder_run(root)
  ckpt = flat(checkpoint.restore_variables(source))
  c = ft_config(source, **{'finetune.freeze': 'trunk', 'num_train_steps': 2,
                           'checkpoint.every_steps': 1})
  assert finetune.freeze_bn(c)                        # a frozen trunk freezes BN by default
  trainer.train_and_evaluate(c, str(tmp_path), mode='train')
  step1 = flat(checkpoint.restore_variables(str(tmp_path), 1))
  end = flat(checkpoint.restore_variables(str(tmp_path)))
  for k in ckpt:
    if not _is_head(k):                                # trunk params and BN statistics
      np.testing.assert_array_equal(step1[k], ckpt[k], err_msg=k)
      np.testing.assert_array_equal(end[k], ckpt[k], err_msg=k)
  assert end[f"{HEAD}['kernel']"].shape == (64, 10)
  assert not np.array_equal(end[f"{HEAD}['kernel']"], step1[f"{HEAD}['kernel']"])


def _updates(mult, freeze='none', name='sgd', steps=2):
  """Updates of ``steps`` optimizer steps on a toy trunk + classifier tree (fixed gradients)."""
  c = finetune_config.get_config('demo')
  c.optim.name, c.finetune.trunk_lr_mult, c.finetune.freeze = name, mult, freeze
  c.optim.weight_decay = 0.0     # decay reads the params, which differ after a first step
  c.optim.grad_clip_norm = 0.5   # global: the head's updates do not depend on the trunk's lr
  tx = optim.make_optimizer(c, optax.constant_schedule(0.1))
  rng = np.random.RandomState(0)
  params = {'blocks': {'conv': {'kernel': rng.randn(3, 3, 4, 8).astype(np.float32)},
                       'bn': {'scale': rng.randn(8).astype(np.float32)}},
            'classifier': {'kernel': rng.randn(8, 5).astype(np.float32),
                           'bias': np.zeros(5, np.float32)}}
  state, out = tx.init(params), []
  for _ in range(steps):
    grads = jax.tree_util.tree_map(lambda p: rng.randn(*p.shape).astype(np.float32), params)
    u, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, u)
    out.append(flat(u))
  return out


@pytest.mark.parametrize('name', ['sgd', 'adamw'])
def test_trunk_lr_multiplier_scales_trunk_updates_only(name):
  full, half, zero, frozen = (_updates(1.0, name=name), _updates(0.5, name=name),
                              _updates(0.0, name=name), _updates(1.0, 'trunk', name=name))
  for f, h, z, fr in zip(full, half, zero, frozen):
    for k in f:
      if 'classifier' in k:
        np.testing.assert_array_equal(h[k], f[k])      # the head keeps the full lr
        np.testing.assert_array_equal(z[k], f[k])
        np.testing.assert_array_equal(fr[k], f[k])
      else:
        assert np.abs(f[k]).max() > 0
        np.testing.assert_array_equal(h[k], 0.5 * f[k])
        assert not np.any(z[k]) and not np.any(fr[k])  # mult 0 == frozen: no trunk update


def test_starting_weights_from_pytorch_and_mindspore_files(tmp_path):
  import mindspore as ms
  from safetensors.numpy import save_file
  from ghostnets_jax.convert import to_mindspore
  # MindSpore names are registered for the GhostNet 1.0x zoo model; the tiny layout via cfgs
  want = _random('ghostnet_100', 7, seed=3)
  ckpt = str(tmp_path / 'tiny.ckpt')
  ms.save_checkpoint([{'name': k, 'data': ms.Tensor(v)}
                      for k, v in to_mindspore('ghostnet_100', want, scheme='model_zoo').items()],
                     ckpt)
  pth = str(tmp_path / 'tiny.safetensors')
  save_file(to_torch('ghostnet_100', want), pth)
  for path in (ckpt, pth):
    c = ft_config(path, model='ghostnet_100')
    got, what = finetune.pretrained_variables(c)
    assert path in what
    g, w = flat(got), flat(want)
    assert g.keys() == w.keys()
    for k in w:
      np.testing.assert_array_equal(g[k], w[k], err_msg=f'{path} {k}')


def test_reset_head_reinitialises_a_head_of_the_same_size():
  loaded, fresh = tiny_variables(10, seed=4), tiny_variables(10, seed=5)
  merged, reinit = state_lib.merge_pretrained(fresh, state_lib.without_head(loaded))
  assert reinit == ['params/classifier/bias', 'params/classifier/kernel']
  m, l, f = flat(merged), flat(loaded), flat(fresh)
  for k in m:
    np.testing.assert_array_equal(m[k], f[k] if _is_head(k) else l[k], err_msg=k)


def test_config_errors(root, tmp_path):
  def build(c, mode=None):
    if mode:
      return trainer.train_and_evaluate(c, str(tmp_path / 'w'), mode)
    return experiment.build(c, str(tmp_path / 'w'))

  with pytest.raises(ValueError, match=r'set --config\.init\.checkpoint='):
    build(ft_config(''))
  with pytest.raises(FileNotFoundError, match=r'config\.init\.checkpoint: not found: .*nope\.pth'):
    build(ft_config(str(tmp_path / 'nope.pth')))
  with pytest.raises(FileNotFoundError, match='holds no ghostnets_jax checkpoint'):
    finetune.pretrained_variables(ft_config(str(tmp_path)))
  with pytest.raises(ValueError, match='not .*checkpoint.*workdir'):
    build(ft_config(str(tmp_path), **{'init.workdir': str(tmp_path)}))
  with pytest.raises(ValueError, match='finetune.freeze must be one of'):
    build(ft_config(str(tmp_path), **{'finetune.freeze': 'all'}))
  with pytest.raises(ValueError, match='trunk_lr_mult must be >= 0'):
    build(ft_config(str(tmp_path), **{'finetune.trunk_lr_mult': -0.1}))
  folder = {'data.source': 'folder'}
  with pytest.raises(ValueError, match=r'--config\.data\.train_dir='):
    build(ft_config(str(tmp_path), **folder))
  with pytest.raises(FileNotFoundError, match=r'config\.data\.train_dir: image folder not found'):
    build(ft_config(str(tmp_path), **folder, **{'data.train_dir': str(tmp_path / 'missing')}))
  with pytest.raises(ValueError, match='data.source must be one of'):
    build(ft_config(str(tmp_path), **{'data.source': 'csv'}))
  with pytest.raises(ValueError, match='data.dataset is empty'):
    build(ft_config(str(tmp_path), **{'data.dataset': ''}))
  train_dir, eval_dir = _example().write_demo_folder(str(tmp_path / 'f'), 2, 1)
  os.rename(os.path.join(eval_dir, 'sandal'), os.path.join(eval_dir, 'boot'))
  with pytest.raises(ValueError, match=r"only in train \['sandal'\], only in eval \['boot'\]"):
    build(ft_config(str(tmp_path), **folder, **{'data.train_dir': train_dir,
                                                 'data.eval_dir': eval_dir}))
  with pytest.raises(ValueError, match='--mode=train_and_eval needs evaluation data'):
    build(ft_config(str(tmp_path), **folder, **{'data.train_dir': train_dir, 'batch_size': 2}),
          'train_and_eval')


def test_frozen_batch_norm_is_eval_mode_inside_a_training_apply():
  from ghostnets_jax.layers import frozen_batch_norm
  model = create_model('ghostnet_050', num_classes=10, drop_rate=0.0).clone(cfgs=TINY_CFGS,
                                                                             head_chs=64)
  variables = _random('ghostnet_050', 10, seed=6)
  x = np.random.RandomState(0).randn(4, 32, 32, 3).astype(np.float32)

  @functools.partial(jax.jit, static_argnums=0)
  def train_apply(frozen, v, x):
    with frozen_batch_norm(frozen):
      return model.apply(v, x, train=True, mutable=['batch_stats'])

  eval_out = jax.jit(lambda v, x: model.apply(v, x, train=False),
                     compiler_options=FAST_COMPILE)(variables, x)
  frozen_out, frozen_stats = train_apply(True, variables, x)
  train_out, train_stats = train_apply(False, variables, x)
  np.testing.assert_allclose(frozen_out, eval_out, rtol=1e-5, atol=1e-5)
  assert np.abs(train_out - eval_out).max() > 1e-2     # batch statistics differ from running ones
  f, t, v = flat(frozen_stats), flat(train_stats), flat({'batch_stats': variables['batch_stats']})
  assert all(np.array_equal(f[k], v[k]) for k in v)
  assert not all(np.array_equal(t[k], v[k]) for k in v)
