"""The trainer end to end: 8 simulated devices (sharded == one device, FSDP, grouped BN, restore
on 1 device), 2 processes on localhost, exact resume, eval from restore, the README's demo,
main.py, and one training step of every config."""
from __future__ import annotations

import copy
import functools
import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from ghostnets_jax import get_spec
from ghostnets_jax.data import preprocess
from ghostnets_jax.train import experiment, mesh as mesh_lib, optim, run_config, state as state_lib, trainer
from ghostnets_jax.train import step as step_lib
from ghostnets_jax.train.checkpoint import Checkpointer
from tests.dist_scenarios import SIZE, tiny_model_and_tx
from tests.train_helpers import (FAST_COMPILE, REFERENCE_RUN, TINY_CFGS, embedded_data_dir, flat,
                                 max_rel_diff,
                                 run_python, tiny_config)

CONFIG_FILES = sorted(f for f in glob.glob(os.path.join(os.path.dirname(__file__), '..', 'configs', '*.py'))
                      if not f.endswith(('__init__.py', 'default.py')))


def _restore_flat(workdir: str, which='latest'):
  """(step, flat state, input position) of a tiny-config run, restored on this process' mesh."""
  exp = experiment.build(tiny_config(**REFERENCE_RUN), workdir, train=False)
  step, state, data = exp.restore(which)
  exp.checkpointer.close()
  return step, flat(state), data


@functools.lru_cache(maxsize=None)
def reference_run(root: str) -> str:
  """The tiny config trained for 4 steps in one go (1 device); its workdir."""
  workdir = os.path.join(root, 'reference')
  trainer.train_and_evaluate(tiny_config(**REFERENCE_RUN), workdir, mode='train')
  return workdir


@pytest.fixture(scope='module')
def ref_root(tmp_path_factory):
  return str(tmp_path_factory.mktemp('train_ref'))


@pytest.mark.xdist_group('train_tiny')
def test_resume_continues_with_identical_state(ref_root, tmp_path):
  ref = reference_run(ref_root)
  c = tiny_config(**REFERENCE_RUN)
  c.stop_after_step = 2
  trainer.train_and_evaluate(c, str(tmp_path), mode='train')          # "preempted" at step 2
  step, mid, data = _restore_flat(str(tmp_path))
  step_ref, mid_ref, data_ref = _restore_flat(ref, 2)
  assert step == step_ref == 2 and data == data_ref == {
      'epoch': 0, 'batch': 2, 'steps_per_epoch': 312, 'local_batch': 32, 'seed': 0}
  for k in mid_ref:
    np.testing.assert_array_equal(mid[k], mid_ref[k], err_msg=k)
  c.stop_after_step = -1
  trainer.train_and_evaluate(c, str(tmp_path), mode='train')          # same command again
  step, end, data = _restore_flat(str(tmp_path))
  step_ref, end_ref, data_ref = _restore_flat(ref)
  assert step == step_ref == 4 and data == data_ref
  assert any('ema' in k for k in end)                                  # EMA params + batch_stats
  for k in end_ref:                                                    # bit-identical
    np.testing.assert_array_equal(end[k], end_ref[k], err_msg=k)
  assert not np.array_equal(end_ref[".params['classifier']['kernel']"],
                            mid_ref[".params['classifier']['kernel']"])


@pytest.mark.xdist_group('train_tiny')
def test_eval_from_restore_latest_best_step_raw_and_ema(ref_root):
  ref = reference_run(ref_root)
  res = {}
  for which, ema in (('latest', True), ('latest', False), ('2', True)):
    c = tiny_config(**REFERENCE_RUN)
    c.eval.checkpoint, c.eval.use_ema = which, ema
    res[which, ema] = trainer.evaluate(c, ref)
  assert res['latest', True]['weights'] == 'ema' and res['latest', False]['weights'] == 'raw'
  assert res['latest', True]['step'] == 4 and res['2', True]['step'] == 2
  assert all(r['count'] == 2000 and 0 <= r['top1'] <= r['top5'] <= 1 for r in res.values())
  assert res['latest', True]['loss'] != res['latest', False]['loss']
  assert os.path.exists(os.path.join(ref, 'eval_step4_ema.json'))
  c = tiny_config(**REFERENCE_RUN)
  c.eval.checkpoint = 'best'           # mode=train tracked no eval metrics: clear error
  with pytest.raises(FileNotFoundError, match='no checkpoint .* has eval metrics'):
    trainer.evaluate(c, ref)


@pytest.mark.xdist_group('train_tiny')
def test_one_console_line_and_one_event_per_metric_per_log_step(tmp_path, caplog):
  """4 steps logged every 2, evaluated at step 4: each log step has one console line with its
  numbers (no second progress note, no echo of the scalars), and the event file holds every
  scalar once per step, equal to what the line says."""
  import collections
  import logging
  import re
  workdir = str(tmp_path / 'run')
  c = tiny_config(**{'num_train_steps': 4, 'log_every_steps': 2, 'eval.every_steps': 4,
                     'checkpoint.every_steps': 4, 'ema.decay': 0.0})
  with caplog.at_level(logging.INFO):
    trainer.train_and_evaluate(c, workdir)
  messages = [r.getMessage() for r in caplog.records if '/orbax/' not in r.pathname]  # as main.py
  progress = [m for m in messages if re.search(r'loss|steps?[/_ ]s|work unit|train/|eval/', m)]
  step_lines = [m for m in progress if re.match(r'step \d+/4 ', m)]
  eval_lines = [m for m in progress if m.startswith('eval at step ')]
  assert [m.split()[1] for m in step_lines] == ['2/4', '4/4'], progress
  assert len(eval_lines) == 1 and eval_lines[0].startswith('eval at step 4:'), progress
  assert len(progress) == 3, progress                   # nothing else about the step's numbers
  events = glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  scalars = collections.Counter()
  values = {}
  for path in events:
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.metadata.plugin_data.plugin_name == 'scalars':
          scalars[event.step, v.tag] += 1
          values[event.step, v.tag] = float(tf.make_ndarray(v.tensor))
  assert scalars and set(scalars.values()) == {1}, scalars          # each scalar once per step
  tags = {tag for _, tag in scalars}
  assert all(t.startswith(('train/', 'eval/')) for t in tags), tags
  train_tags = {t for t in tags if t.startswith('train/')}
  assert {s for s, t in scalars if t.startswith('train/')} == {2, 4}
  assert {(s, t) for s, t in scalars if s == 2} == {(2, t) for t in train_tags}
  assert {s for s, t in scalars if t.startswith('eval/')} == {4}
  logged = re.search(r'loss (\S+)  top1 (\S+)', step_lines[1]).groups()
  assert values[4, 'train/loss'] == pytest.approx(float(logged[0]), abs=1e-4)
  assert values[4, 'train/top1'] == pytest.approx(float(logged[1]), abs=1e-4)
  assert re.search(r'top1 (\S+)', eval_lines[0]).group(1) == f"{values[4, 'eval/top1']:.4f}"


@pytest.mark.xdist_group('train_devices8')
def test_eight_devices_sharded_fsdp_grouped_bn_and_restore_on_one_device(tmp_path):
  p = run_python(['-m', 'tests.dist_scenarios', 'devices8', str(tmp_path)],
                 env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'})
  log = p.communicate(timeout=1500)[0]
  assert p.returncode == 0, log[-4000:]
  res = json.load(open(tmp_path / 'result.json'))
  print(json.dumps(res, indent=1))
  np.testing.assert_allclose(res['loss_8dev'], res['loss_1dev'], rtol=1e-5)
  assert res['rel_8dev_vs_1dev'] < 1e-5            # synced BN: same loss and updated state
  np.testing.assert_allclose(res['loss_fsdp'], res['loss_8dev'], rtol=1e-5)
  assert res['rel_fsdp_vs_8dev'] < 1e-5 and res['fsdp_sharded_param_leaves'] > 5
  assert res['grouped_bn_logits_maxdiff'] < 1e-4 and res['grouped_bn_stats_rel'] < 1e-5
  assert res['global_bn_logits_maxdiff'] > 1e-2     # grouping changes the result
  model, tx = tiny_model_and_tx()                   # the 8-device checkpoint on 1 device
  abstract = state_lib.abstract_state(model, tx, SIZE, use_ema=True)
  mesh = mesh_lib.make_mesh((1, 1))
  shardings = state_lib.state_shardings(mesh, abstract, 2 ** 14)
  ck = Checkpointer(str(tmp_path / 'ckpt'), read_only=True, async_save=False)
  step, state, data = ck.restore('latest', abstract, shardings)
  want = np.load(tmp_path / 'state8.npz')
  got = flat(state)
  assert step == 2 and data['batch'] == 2 and set(got) == set(want.files)
  for k in want.files:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  assert all(len(x.sharding.device_set) == 1 for x in jax.tree_util.tree_leaves(state))


def _demo_root(tmp_path_factory) -> str:
  return str(tmp_path_factory.getbasetemp() / 'demo_shared')


@functools.lru_cache(maxsize=None)
def _demo_run(root: str):
  """The README's demo shortened to 60 steps, run once per session: (config, workdir, final)."""
  from configs import g_ghost_regnet
  c = g_ghost_regnet.get_config('demo')
  c.data.data_dir = embedded_data_dir()
  c.num_train_steps, c.eval.every_steps, c.checkpoint.every_steps = 60, 30, 30
  c.compiler_options = FAST_COMPILE
  workdir = os.path.join(root, 'demo')
  return c, workdir, trainer.train_and_evaluate(c, workdir)


@pytest.mark.xdist_group('train_demo')
def test_demo_trains_checkpoints_and_evaluates_from_restore(tmp_path_factory):
  """The README's main command (shortened to 60 steps): well above chance (10 classes)."""
  c, workdir, final = _demo_run(_demo_root(tmp_path_factory))
  c = copy.deepcopy(c)
  assert final['count'] == 2000 and final['top1'] > 0.45, final
  for f in ('config.json', 'resolved_config.json'):
    assert os.path.exists(os.path.join(workdir, f))
  resolved = json.load(open(os.path.join(workdir, 'resolved_config.json')))
  assert resolved['lr'] == pytest.approx(0.2) and resolved['steps_per_epoch'] == 78
  assert glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))       # TensorBoard
  c.eval.checkpoint = 'best'
  restored = trainer.evaluate(c, workdir)
  assert restored['step'] in (30, 60)
  if restored['step'] == 60:
    assert restored['top1'] == pytest.approx(final['top1'], abs=1e-6)
  assert restored['top1'] >= final['top1'] - 1e-6


@pytest.mark.xdist_group('train_demo')
def test_main_cli_path_variant_overrides_and_eval_mode(tmp_path_factory):
  _, workdir, final = _demo_run(_demo_root(tmp_path_factory))
  p = run_python(['main.py', '--config=configs/g_ghost_regnet.py:demo', f'--workdir={workdir}',
                  '--mode=eval', '--config.eval.checkpoint=60',      # at the run's eval batch
                  f'--config.data.data_dir={embedded_data_dir()}'])
  log = p.communicate(timeout=1500)[0]
  assert p.returncode == 0, log[-4000:]
  res = json.load(open(os.path.join(workdir, 'eval_step60_raw.json')))
  assert res['top1'] == pytest.approx(final['top1'], abs=1e-6) and res['count'] == 2000
  p = run_python(['main.py', '--config=configs/g_ghost_regnet.py:demo', f'--workdir={workdir}',
                  '--config.no_such_field=1'])
  log = p.communicate(timeout=600)[0]
  assert p.returncode != 0 and 'no_such_field' in log


def _load_config(path: str, variant=None):
  import importlib.util
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(variant)


def _tiny_stand_in(c):
  """The config's recipe on a model that compiles in seconds: the tiny GhostNet, or MultiGrain
  on a 1-1-1-1 ResNet trunk (its loss needs the embeddings)."""
  if c.model.startswith('multigrain'):
    from configs.multigrain import DEMO_BACKBONE
    c.model_kwargs.backbone_kwargs = DEMO_BACKBONE
  else:
    c.model = 'ghostnet_050'
    c.model_kwargs.cfgs, c.model_kwargs.head_chs = TINY_CFGS, 64
  return c


@pytest.mark.xdist_group('train_configs')
@pytest.mark.parametrize('path', CONFIG_FILES, ids=os.path.basename)
def test_every_config_builds_its_model_and_runs_one_training_step(path):
  """Each config's model is built at its input size (abstractly: shapes only), and one
  training step of its whole recipe (optimizer, schedule, loss, EMA, mixup, augmentation ops)
  runs on tiny inputs with a stand-in model of seconds of compile."""
  c = _load_config(path)
  spec = get_spec(c.model)
  real = experiment.build_model(c, num_classes=10)
  shapes = jax.eval_shape(real.init, jax.random.key(0),
                          jnp.zeros((1, spec.input_size, spec.input_size, 3)))
  assert sum(x.size for x in jax.tree_util.tree_leaves(shapes['params'])) > 1e6
  c = _tiny_stand_in(c)
  a = c.aug
  spec_str = preprocess.train_spec(   # every preprocessing op of the recipe exists
      SIZE, scale=a.crop_scale, ratio=a.crop_ratio, interpolation=a.interpolation, hflip=a.hflip,
      mean=spec.mean, std=spec.std, auto_augment=a.auto_augment, color_jitter=a.color_jitter,
      reprob=a.reprob, remode=a.remode, recount=a.recount, ops=a.ops, post_ops=a.post_ops)
  image = preprocess.compose(spec_str)(tf.zeros((40, 48, 3), tf.uint8), tf.constant([0, 1], tf.int64))
  assert image.shape == (SIZE, SIZE, 3) and image.dtype == tf.float32
  model = experiment.build_model(c, num_classes=10)
  schedule = optim.make_schedule(c, steps_per_epoch=10, total_steps=100)
  tx = optim.make_optimizer(c, schedule)
  sc = run_config.step_config(c, num_classes=10, steps_per_epoch=10)
  loss_init = step_lib.get_loss(c.loss).init_params
  mesh = mesh_lib.make_mesh((1, 1))
  abstract = state_lib.abstract_state(model, tx, SIZE, bool(c.ema.decay), loss_init)
  sh = state_lib.state_shardings(mesh, abstract, 2 ** 14)
  state = state_lib.create_state(model, tx, SIZE, use_ema=bool(c.ema.decay),
                                 rng=jax.random.key(0), shardings=sh, loss_init=loss_init)
  fn = jax.jit(step_lib.make_train_step(model, tx, sc, schedule), compiler_options=FAST_COMPILE)
  bs = 6 * c.optim.grad_accum_steps      # 2 images x 3 repeats for repeated augmentation
  batch = {'image': jax.random.normal(jax.random.key(1), (bs, SIZE, SIZE, 3)),
           'label': jnp.arange(bs, dtype=jnp.int32) % 10,
           'image_id': jnp.arange(bs, dtype=jnp.int32) // 3}
  before = flat(state.params)
  new, m = fn(fn(state, batch)[0], batch)        # two steps: a warmup may start at lr 0
  loss = float(m.compute()['loss'])
  assert np.isfinite(loss) and int(new.step) == 2
  assert max_rel_diff(flat(new.params), before) > 0
