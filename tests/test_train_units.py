"""Trainer pieces in isolation: grouped BatchNorm, schedules, optimizers against PyTorch / the TF
formula, weight-decay mask, gradient accumulation, EMA, distillation, pretrained merging,
checkpoint retention, configs."""
from __future__ import annotations

import glob
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default as default_config
from ghostnets_jax.layers import BatchNorm, Conv2d, batch_norm_groups
from ghostnets_jax.train import optim, state as state_lib, step as step_lib
from ghostnets_jax.train.checkpoint import Checkpointer
from tests.helpers import random_variables

CONFIG_FILES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), '..', 'configs', '*.py')))
CONFIG_FILES = [f for f in CONFIG_FILES if not f.endswith(('__init__.py', 'default.py'))]


def test_grouped_batchnorm_equals_per_group_statistics():
  x = jax.random.normal(jax.random.key(0), (8, 3, 3, 5)) * 2 + 1
  bn = BatchNorm()
  v = bn.init(jax.random.key(1), x, use_running_average=False)
  v = {'params': {'scale': jnp.arange(1., 6.), 'bias': jnp.arange(5.) / 10}, 'batch_stats': v['batch_stats']}
  apply = jax.jit(lambda v, x: bn.apply(v, x, use_running_average=False, mutable=['batch_stats']))

  @jax.jit
  def grouped(v, x):
    with batch_norm_groups(4):
      return bn.apply(v, x, use_running_average=False, mutable=['batch_stats'])

  y, upd = grouped(v, x)
  parts = [apply(v, x[2 * g:2 * g + 2]) for g in range(4)]
  np.testing.assert_allclose(y, jnp.concatenate([p[0] for p in parts]), rtol=1e-5, atol=1e-5)
  for k in ('mean', 'var'):   # running stats: mean over the groups' updates
    np.testing.assert_allclose(upd['batch_stats'][k],
                               np.mean([p[1]['batch_stats'][k] for p in parts], 0), rtol=1e-5)
  y1, _ = apply(v, x)         # default: one group = the whole batch (global statistics)
  assert not np.allclose(y1, y, atol=1e-3)
  with pytest.raises(ValueError, match='does not split into 3 BN groups'):
    with batch_norm_groups(3):
      bn.apply(v, x, use_running_average=False, mutable=['batch_stats'])


def _cfg(**kw):
  c = default_config.get_config()
  c.batch_size, c.optim.lr, c.optim.lr_ref_batch = 512, 0.4, 1024
  for k, v in kw.items():
    section, name = k.split('__')
    c[section][name] = v
  return c


def test_lr_scaled_linearly_after_overrides_and_schedules():
  c = _cfg(schedule__name='cosine', schedule__warmup_epochs=2.0, schedule__warmup_init_lr=0.01)
  assert optim.scaled_lr(c) == pytest.approx(0.2)
  c.batch_size = 2048                    # an override after loading: lr follows
  assert optim.scaled_lr(c) == pytest.approx(0.8)
  s = optim.make_schedule(c, steps_per_epoch=10, total_steps=100)
  assert float(s(0)) == pytest.approx(0.01)
  assert float(s(10)) == pytest.approx(0.01 + (0.8 - 0.01) / 2)
  assert float(s(20)) == pytest.approx(0.8)
  assert float(s(60)) == pytest.approx(0.4, rel=1e-5)    # half way through the cosine
  assert float(s(100)) == pytest.approx(0.0, abs=1e-7)
  c = _cfg(schedule__name='step', schedule__milestones=(3, 6), schedule__decay_rate=0.1)
  s = optim.make_schedule(c, 10, 100)
  assert [float(s(i)) for i in (29, 30, 59, 60)] == pytest.approx([0.2, 0.02, 0.02, 0.002])
  c = _cfg(schedule__name='exponential', schedule__decay_epochs=2.4, schedule__decay_rate=0.97)
  s = optim.make_schedule(c, 10, 100)
  assert [float(s(i)) for i in (23, 24, 48)] == pytest.approx([0.2, 0.2 * 0.97, 0.2 * 0.97 ** 2])


def test_weight_decay_mask_excludes_bn_and_biases():
  params = {'conv': {'kernel': jnp.ones((3, 3, 2, 4))}, 'bn': {'scale': jnp.ones(4), 'bias': jnp.ones(4)},
            'fc': {'kernel': jnp.ones((4, 2)), 'bias': jnp.ones(2)}}
  mask = optim.weight_decay_mask(params)
  assert mask == {'conv': {'kernel': True}, 'bn': {'scale': False, 'bias': False},
                  'fc': {'kernel': True, 'bias': False}}
  assert all(jax.tree_util.tree_leaves(optim.weight_decay_mask(params, exclude_1d=False)))
  # MindSpore's default filter (names without 'gamma'/'beta'): BN affine excluded, biases decayed
  assert optim.weight_decay_mask(params, exclude_1d=False, exclude_norm=True) == {
      'conv': {'kernel': True}, 'bn': {'scale': False, 'bias': False},
      'fc': {'kernel': True, 'bias': True}}


def test_per_epoch_cosine_is_vegas_by_epoch_staircase():
  """Huawei Vega's MindSpore ``CosineAnnealingLR`` (``by_epoch: True``): epoch e runs at
  ``eta_min + (lr - eta_min) * (1 + cos(pi * e / T_max)) / 2`` (T_max = epochs, eta_min = 0)."""
  import math
  from configs import ghostnet_d
  c = ghostnet_d.get_config()
  spe, epochs = 7, int(c.num_epochs)
  s = optim.make_schedule(c, spe, spe * epochs)
  for e in (0, 1, 37, 119):
    want = 0.001 * (1 + math.cos(math.pi * e / 120)) / 2
    assert [float(s(e * spe + k)) for k in (0, spe - 1)] == pytest.approx([want] * 2, abs=1e-9)


def _run(tx, params, grads_seq):
  st = tx.init(params)
  for g in grads_seq:
    u, st = tx.update(g, st, params)
    params = optax.apply_updates(params, u)
  return params


def _problem(seed=0):
  rng = np.random.RandomState(seed)
  params = {'w': rng.randn(3, 4).astype(np.float32), 'b': rng.randn(4).astype(np.float32)}
  grads = [{k: rng.randn(*v.shape).astype(np.float32) for k, v in params.items()} for _ in range(4)]
  return params, grads


@pytest.mark.parametrize('nesterov', [False, True])
def test_sgd_matches_torch(nesterov):
  import torch
  params, grads = _problem()
  c = _cfg(optim__name='sgd', optim__momentum=0.9, optim__nesterov=nesterov,
           optim__weight_decay=1e-2)
  ours = _run(optim.make_optimizer(c, lambda s: 0.1), params, grads)
  w = torch.nn.Parameter(torch.tensor(params['w']))
  b = torch.nn.Parameter(torch.tensor(params['b']))
  opt = torch.optim.SGD([{'params': [w], 'weight_decay': 1e-2}, {'params': [b], 'weight_decay': 0}],
                        lr=0.1, momentum=0.9, nesterov=nesterov)
  for g in grads:
    w.grad, b.grad = torch.tensor(g['w']), torch.tensor(g['b'])
    opt.step()
  np.testing.assert_allclose(ours['w'], w.detach().numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ours['b'], b.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_rmsprop_tf_matches_the_tf_formula():
  """TF / timm RMSpropTF: ms starts at 1, eps inside the sqrt, lr inside the momentum."""
  params, grads = _problem(1)
  lr, rho, eps, mom, wd = 0.05, 0.9, 1e-3, 0.9, 1e-2
  c = _cfg(optim__name='rmsprop_tf', optim__rms_decay=rho, optim__eps=eps, optim__momentum=mom,
           optim__weight_decay=wd)
  ours = _run(optim.make_optimizer(c, lambda s: lr), params, grads)
  for k in params:
    p, ms, buf = params[k].astype(np.float64), np.ones_like(params[k], np.float64), 0.0
    for g in grads:
      g = g[k] + (wd * p if p.ndim > 1 else 0.0)
      ms = rho * ms + (1 - rho) * g * g
      buf = mom * buf + lr * g / np.sqrt(ms + eps)
      p = p - buf
    np.testing.assert_allclose(ours[k], p, rtol=1e-5, atol=1e-6)


def test_adamw_matches_torch_and_lamb_descends():
  import torch
  params, grads = _problem(2)
  c = _cfg(optim__name='adamw', optim__weight_decay=0.05, optim__wd_exclude_1d=False)
  ours = _run(optim.make_optimizer(c, lambda s: 1e-2), params, grads)
  w = torch.nn.Parameter(torch.tensor(params['w']))
  opt = torch.optim.AdamW([w], lr=1e-2, weight_decay=0.05, eps=1e-8)
  for g in grads:
    w.grad = torch.tensor(g['w'])
    opt.step()
  np.testing.assert_allclose(ours['w'], w.detach().numpy(), rtol=1e-5, atol=1e-6)
  tx = optim.make_optimizer(_cfg(optim__name='lamb', optim__weight_decay=0.0), lambda s: 0.05)
  loss = lambda p: jnp.sum(jnp.square(p['w'] - 1.0))  # noqa: E731
  p = {'w': jnp.asarray(params['w'])}
  st = tx.init(p)
  for _ in range(20):
    u, st = tx.update(jax.grad(loss)(p), st, p)
    p = optax.apply_updates(p, u)
  assert float(loss(p)) < 0.5 * float(loss({'w': jnp.asarray(params['w'])}))


def test_gradient_clipping():
  tx = optim.make_optimizer(_cfg(optim__grad_clip_norm=1.0, optim__momentum=0.0,
                                 optim__weight_decay=0.0), lambda s: 1.0)
  p = {'w': jnp.zeros(4)}
  u, _ = tx.update({'w': jnp.full(4, 10.0)}, tx.init(p), p)
  assert float(optax.global_norm(u)) == pytest.approx(1.0, rel=1e-5)


class _MLP(nn.Module):
  num_classes: int = 3

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes)(x)


def _mlp_step(accum, ema=0.0, smoothing=0.0):
  model, tx = _MLP(), optax.sgd(0.1, momentum=0.9)
  state = state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=None, batch_stats={},
                               opt_state=None, ema={})
  params = model.init(jax.random.key(0), jnp.zeros((1, 2, 2, 1)))['params']
  state = state.replace(params=params, opt_state=tx.init(params),
                        ema={'params': params, 'batch_stats': {}} if ema else {})
  cfg = step_lib.StepConfig(num_classes=3, grad_accum_steps=accum, ema_decay=ema,
                            label_smoothing=smoothing)
  return jax.jit(step_lib.make_train_step(model, tx, cfg, lambda s: 0.1)), state


def test_gradient_accumulation_equals_the_full_batch_step():
  batch = {'image': jax.random.normal(jax.random.key(2), (8, 2, 2, 1)),
           'label': jnp.array([0, 1, 2, 0, 1, 2, 0, 1])}
  (f1, s), (f4, _) = _mlp_step(1), _mlp_step(4)
  a, ma = f1(s, batch)
  b, mb = f4(s, batch)
  np.testing.assert_allclose(ma.compute()['loss'], mb.compute()['loss'], rtol=1e-6)
  for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def test_ema_tracks_params_and_label_smoothing_targets():
  f, s = _mlp_step(1, ema=0.9, smoothing=0.1)
  batch = {'image': jnp.ones((4, 2, 2, 1)), 'label': jnp.array([0, 1, 2, 0])}
  new, _ = f(s, batch)
  for e, p0, p1 in zip(*(jax.tree_util.tree_leaves(t) for t in (new.ema['params'], s.params, new.params))):
    np.testing.assert_allclose(e, 0.9 * p0 + 0.1 * p1, rtol=1e-6, atol=1e-7)
  t = step_lib.smooth_targets(jnp.array([2]), 4, 0.1)
  np.testing.assert_allclose(t, [[0.025, 0.025, 0.925, 0.025]], rtol=1e-6)


class _ConvNet(nn.Module):
  """Depthwise (custom-VJP kernel) + BN + dropout: what rematerialisation recomputes."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = Conv2d(6, 3, strides=2)(x)
    x = Conv2d(6, 3, groups=6)(x)
    x = nn.relu(BatchNorm()(x, use_running_average=not train))
    x = nn.Dropout(0.2, deterministic=not train)(x)
    return nn.Dense(3)(x.mean((1, 2)))


@pytest.mark.parametrize('policy', ['nothing_saveable', 'dots_saveable'])
def test_remat_policy_gives_the_same_step(policy):
  """config.remat recomputes the forward in the backward: same params, BN statistics and loss as
  without it (dropout's mask included), and the step's program does hold a remat region."""
  model, tx = _ConvNet(), optax.sgd(0.1, momentum=0.9)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 9, 9, 3)))
  state = state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=variables['params'],
                               batch_stats=variables['batch_stats'],
                               opt_state=tx.init(variables['params']), ema={})
  batch = {'image': jax.random.normal(jax.random.key(1), (4, 9, 9, 3)), 'label': jnp.array([0, 1, 2, 1])}
  out = {}
  for remat in ('none', policy):
    fn = step_lib.make_train_step(model, tx, step_lib.StepConfig(num_classes=3, remat=remat),
                                  lambda s: 0.1)
    assert ('remat' in str(jax.make_jaxpr(fn)(state, batch))) == (remat != 'none')
    out[remat] = jax.jit(fn)(state, batch)
  (a, ma), (b, mb) = out['none'], out[policy]
  np.testing.assert_allclose(ma.compute()['loss'], mb.compute()['loss'], rtol=1e-6)
  for x, y in zip(jax.tree_util.tree_leaves((a.params, a.batch_stats)),
                  jax.tree_util.tree_leaves((b.params, b.batch_stats))):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_unknown_remat_policy_names_the_choices():
  with pytest.raises(ValueError, match=r"config.remat='dots'.*nothing_saveable"):
    step_lib.StepConfig(num_classes=3, remat='dots')
  cfg = default_config.get_config()
  cfg.remat = 'dots_saveable'
  from ghostnets_jax.train.run_config import step_config
  assert step_config(cfg, 10).remat == 'dots_saveable'


def test_distillation_loss():
  s = jax.random.normal(jax.random.key(0), (5, 7))
  np.testing.assert_allclose(step_lib.distillation_loss(s, s, 2.0), 0.0, atol=1e-6)
  t = jax.random.normal(jax.random.key(1), (5, 7))
  T = 3.0
  pt, ps = jax.nn.softmax(t / T), jax.nn.softmax(s / T)
  want = T * T * np.sum(pt * (np.log(pt) - np.log(ps)), -1)
  np.testing.assert_allclose(step_lib.distillation_loss(s, t, T), want, rtol=1e-5)


def test_merge_pretrained_reinitialises_only_a_different_head():
  from ghostnets_jax import create_model
  from ghostnets_jax.convert import from_torch, to_torch
  v1000 = random_variables(create_model('ghostnet_050', num_classes=1000), seed=1)
  loaded = from_torch('ghostnet_050', to_torch('ghostnet_050', v1000))   # a PyTorch checkpoint
  fresh = random_variables(create_model('ghostnet_050', num_classes=10), seed=2)
  merged, reinit = state_lib.merge_pretrained(fresh, loaded)
  assert reinit == ['params/classifier/bias', 'params/classifier/kernel']
  np.testing.assert_array_equal(merged['params']['classifier']['kernel'],
                                fresh['params']['classifier']['kernel'])
  np.testing.assert_array_equal(merged['params']['conv_head']['kernel'],
                                v1000['params']['conv_head']['kernel'])
  np.testing.assert_array_equal(merged['batch_stats']['conv_stem']['bn']['var'],
                                v1000['batch_stats']['conv_stem']['bn']['var'])
  bad = jax.tree_util.tree_map(lambda x: x, loaded)
  bad['params']['conv_head']['kernel'] = np.zeros((3, 3))
  with pytest.raises(ValueError, match=r'conv_head/kernel: model \(480, 1280\), checkpoint \(3, 3\)'):
    state_lib.merge_pretrained(fresh, bad)


def test_checkpointer_keeps_latest_n_plus_best(tmp_path):
  ck = Checkpointer(str(tmp_path), keep=2, keep_best=1, async_save=False)
  st = {'w': jnp.arange(3.0)}
  top1 = {1: 0.2, 2: 0.9, 3: 0.4, 4: None, 5: 0.5, 6: None}
  for s, m in top1.items():
    ck.save(s, jax.tree_util.tree_map(lambda x: x * s, st), {'epoch': s, 'batch': 0},
            None if m is None else {'top1': m})
  ck.wait()
  assert ck.all_steps() == [2, 5, 6]        # best (2) + latest two
  assert ck.resolve('best') == 2 and ck.resolve('latest') == 6
  with pytest.raises(FileNotFoundError, match='no checkpoint for step 3.*steps: \\[2, 5, 6\\]'):
    ck.resolve(3)
  step, got, data = ck.restore('best', jax.eval_shape(lambda: st),
                               {'w': jax.sharding.SingleDeviceSharding(jax.devices()[0])})
  np.testing.assert_array_equal(got['w'], [0.0, 2.0, 4.0])
  assert (step, data) == (2, {'epoch': 2, 'batch': 0})
  ck.close()


@pytest.mark.parametrize('path', CONFIG_FILES, ids=os.path.basename)
def test_every_config_loads_with_variants(path):
  import importlib.util
  spec = importlib.util.spec_from_file_location('cfg', path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  for variant in (None, 'demo') + mod.MODELS:
    c = mod.get_config(variant)
    assert c.model and c.optim.lr > 0 and c.batch_size > 0 and c.optim.lr_ref_batch > 0
    assert c.optim.name in optim.OPTIMIZERS and c.schedule.name in optim.SCHEDULES
    if variant == 'demo':
      assert c.data.dataset == 'fashion_mnist_embedded'
    elif variant:
      assert c.model == variant
  with pytest.raises(ValueError, match='unknown config variant'):
    mod.get_config('resnet9000')


def test_repeated_sampler_keeps_copies_together_and_is_process_count_independent():
  from ghostnets_jax.data.pipeline import make_sampler
  n, gb = 40, 12
  one = make_sampler('repeated', n, gb, seed=1, process_index=0, process_count=1, repeats=3,
                     len_factor=3.0)   # 3 x 40 samples: every image's 3 copies
  rec, pos = one.epoch_indices(0)
  assert one.steps_per_epoch == 10 // 1 * 1 and len(rec) == one.steps_per_epoch * gb
  np.testing.assert_array_equal(pos, np.arange(len(rec)))          # every copy its own seed
  groups = rec.reshape(-1, 3)
  assert (groups == groups[:, :1]).all()                           # m = 3 consecutive copies
  assert len(set(groups[:, 0])) == len(groups)                     # each image once per epoch
  two = [make_sampler('repeated', n, gb, seed=1, process_index=p, process_count=2, repeats=3,
                      len_factor=3.0)
         for p in range(2)]
  parts = [s.epoch_indices(0) for s in two]
  steps = one.steps_per_epoch
  glob_rec = np.concatenate([r.reshape(steps, -1) for r, _ in parts], 1).reshape(-1)
  glob_pos = np.concatenate([q.reshape(steps, -1) for _, q in parts], 1).reshape(-1)
  np.testing.assert_array_equal(glob_rec, rec)
  np.testing.assert_array_equal(glob_pos, pos)
  with pytest.raises(ValueError, match='multiple of processes x repeats'):
    make_sampler('repeated', n, 10, seed=1, process_index=0, process_count=1, repeats=3)


def test_mixup_batch_transform_commutes_with_label_smoothing():
  from ghostnets_jax.data.mixup import MixupConfig, mixup_cutmix
  rng = jax.random.key(3)
  images = jax.random.normal(jax.random.key(4), (8, 6, 6, 3))
  labels = jnp.arange(8) % 5
  kw = dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode='elem')
  fn = step_lib.get_batch_transform('mixup')
  x, t = fn(rng, images, step_lib.smooth_targets(labels, 5, 0.1), **kw)
  x_ref, t_ref = mixup_cutmix(rng, images, jax.nn.one_hot(labels, 5),
                              MixupConfig(label_smoothing=0.1, **kw))
  np.testing.assert_allclose(x, x_ref, rtol=1e-6)
  np.testing.assert_allclose(t, t_ref, rtol=1e-6, atol=1e-7)
  assert not np.allclose(x, images) and float(jnp.min(jnp.max(t, 1))) < 0.9   # mixed


def test_g_ghost_regnet_width_variants_follow_the_pytorch_imagenet_example():
  """``:040`` ``:080`` ``:160`` (the official README's released widths) with the recipe of the
  PyTorch ImageNet example the README names (``main.py`` defaults: 90 epochs, batch 256, SGD
  momentum 0.9, lr 0.1 divided by 10 every 30 epochs, weight decay 1e-4); lr x batch / 256."""
  from configs import g_ghost_regnet
  from ghostnets_jax.registry import get_spec
  for tag in ('040', '080', '160'):
    c = g_ghost_regnet.get_config(tag)
    assert c.model == f'g_ghost_regnetx_{tag}' and get_spec(c.model).top1 is not None
    assert (c.num_epochs, c.batch_size, c.optim.name, c.optim.momentum, c.optim.nesterov) == (
        90, 256, 'sgd', 0.9, False)
    assert (c.schedule.name, tuple(c.schedule.milestones), c.schedule.decay_rate) == (
        'step', (30, 60), 0.1)
    assert c.optim.weight_decay == 1e-4 and not c.optim.wd_exclude_1d and c.label_smoothing == 0
    assert optim.scaled_lr(c) == pytest.approx(0.1)
    c.batch_size = 1024
    assert optim.scaled_lr(c) == pytest.approx(0.4)
  assert g_ghost_regnet.get_config('regnetx_080').model == 'regnetx_080'
