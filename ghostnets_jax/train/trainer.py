"""The trainer: ``train_and_evaluate(config, workdir)`` and ``evaluate(config, workdir)``.

``main.py`` only parses flags and calls these. Everything derived from the config (scaled
learning rate, image sizes, eval crop, step counts, mesh) is computed here, after command-line
overrides, and written to ``workdir/resolved_config.json`` next to ``config.json``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import sys
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from clu import periodic_actions

from ghostnets_jax import storage
from ghostnets_jax.data import datasets, pipeline, preprocess
from ghostnets_jax.registry import create_model, get_spec, module_fields
from ghostnets_jax.train import mesh as mesh_lib
from ghostnets_jax.train import evaluators, finetune, optim, state as state_lib, step as step_lib
from ghostnets_jax.train import summary
from ghostnets_jax.train import workdir as workdir_lib
from ghostnets_jax.train.checkpoint import (BEST_METRIC, Checkpointer, is_run_checkpoint,
                                            restore_variables)

def _dtype(name: str) -> Any:
  dtypes = {'float32': None, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}
  if name not in dtypes:
    raise ValueError(f'config.dtype must be one of {sorted(dtypes)}, got {name!r}')
  return dtypes[name]


@dataclasses.dataclass
class Experiment:
  """Everything built from a config: mesh, model, data, optimizer, jitted steps, checkpointer."""
  config: ml_collections.ConfigDict
  workdir: str
  resolved: dict[str, Any]
  mesh: Any
  model: Any
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  abstract: state_lib.TrainState
  shardings: state_lib.TrainState
  train_source: Optional[datasets.Source]
  eval_source: Optional[datasets.Source]
  checkpointer: Checkpointer
  teacher: Any = None
  teacher_vars: Any = None
  run_record: Optional[tuple[dict, dict]] = None   # (identity, state signature) for run.json
  _train_step: Any = None
  _eval_step: Any = None
  _embed_fn: Any = None

  @property
  def compiler_options(self) -> Optional[dict]:
    return self.config.compiler_options.to_dict() or None

  @property
  def batch_sharding(self):
    return mesh_lib.batch_sharding(self.mesh)

  # ----------------------------------------------------------------------------------- data
  def train_iterator(self) -> pipeline.TrainIterator:
    c, r = self.config, self.resolved
    sampler = pipeline.make_sampler(
        c.data.sampler, len(self.train_source), c.batch_size, seed=c.seed,
        process_index=jax.process_index(), process_count=jax.process_count(),
        **c.data.sampler_kwargs.to_dict())
    return pipeline.TrainIterator(self.train_source, sampler, r['train_preprocess'],
                                  c.batch_size // jax.process_count(), seed=c.seed,
                                  threads=c.data.threads, prefetch=c.data.prefetch)

  def eval_batches(self):
    r = self.resolved
    ds, steps = pipeline.eval_dataset(
        self.eval_source, r['eval_preprocess'], r['eval_batch_size'] // jax.process_count(),
        process_index=jax.process_index(), process_count=jax.process_count(),
        threads=self.config.data.threads)
    return ds, steps

  # ---------------------------------------------------------------------------------- state
  def init_state(self) -> state_lib.TrainState:
    c = self.config
    state = state_lib.create_state(self.model, self.tx, self.resolved['image_size'],
                                   use_ema=bool(c.ema.decay), rng=jax.random.key(c.seed),
                                   shardings=self.shardings,
                                   loss_init=step_lib.get_loss(c.loss).init_params)
    src = finetune.pretrained_variables(c)
    if src is not None:
      state = state_lib.load_pretrained(state, src[0], self.shardings, what=src[1],
                                        reset_head=bool(c.get('finetune', {}).get('reset_head')))
    return state

  def restore(self, which, quarantine: bool = False) -> tuple[int, state_lib.TrainState, dict]:
    return self.checkpointer.restore(which, self.abstract, self.shardings, quarantine=quarantine)

  # ---------------------------------------------------------------------------------- steps
  def train_step(self, state, batch):
    if self._train_step is None:
      fn = step_lib.make_train_step(self.model, self.tx, self.resolved['step_config'],
                                    self.schedule, self.teacher)
      self._train_step = jax.jit(fn, out_shardings=(self.shardings, mesh_lib.replicated(self.mesh)),
                                 donate_argnums=0, compiler_options=self.compiler_options)
    return self._train_step(state, batch, self.teacher_vars)

  def evaluate(self, variables: dict, desc: str = 'eval') -> dict[str, float]:
    """Top-1/top-5/loss over the whole eval split (padded batches masked out)."""
    if self._eval_step is None:
      fn = step_lib.make_eval_step(self.model, self.resolved['num_classes'])
      self._eval_step = jax.jit(fn, out_shardings=mesh_lib.replicated(self.mesh),
                                compiler_options=self.compiler_options)
    ds, steps = self.eval_batches()
    total = None
    for batch in _progress(ds.as_numpy_iterator(), steps, desc):
      m = self._eval_step(variables, mesh_lib.global_batch(batch, self.batch_sharding))
      total = m if total is None else total.merge(m)
    out = {k: float(v) for k, v in total.compute().items()}
    out['count'] = int(round(float(total.top1.count)))
    for name in self.config.eval.evaluators:
      out.update(evaluators.get_evaluator(name)(self, variables))
    return out


def _progress(it, total: int, desc: str):
  """A tqdm bar on an interactive console of process 0; plain iteration otherwise."""
  if jax.process_index() != 0 or not sys.stderr.isatty():
    return it
  from tqdm import tqdm
  return tqdm(it, total=total, desc=desc, leave=False)


def ema_decay(c: ml_collections.ConfigDict, steps_per_epoch: int) -> float:
  """The per-step EMA decay (``ema.per_epoch``: ``decay`` is stated per epoch)."""
  d = c.ema.decay
  return d ** (1.0 / steps_per_epoch) if c.ema.per_epoch and d > 0 else d


def step_config(c: ml_collections.ConfigDict, num_classes: int, bn_groups: int = 1,
                steps_per_epoch: int = 1) -> step_lib.StepConfig:
  a = c.aug
  transform, kwargs = a.batch_transform, a.batch_transform_kwargs.to_dict()
  if a.mixup_alpha > 0 or a.cutmix_alpha > 0:
    if transform:
      raise ValueError(f'aug.mixup_alpha/cutmix_alpha and aug.batch_transform={transform!r} are '
                       'both set; the step applies one batch transform: clear one of them.')
    transform, kwargs = 'mixup', dict(mixup_alpha=a.mixup_alpha, cutmix_alpha=a.cutmix_alpha,
                                      prob=a.mixup_prob, switch_prob=a.mixup_switch_prob,
                                      mode=a.mixup_mode)
  return step_lib.StepConfig(
      num_classes=num_classes, label_smoothing=c.label_smoothing, loss=c.loss,
      bn_groups=bn_groups, grad_accum_steps=c.optim.grad_accum_steps, ema_decay=ema_decay(c, steps_per_epoch),
      batch_transform=transform, batch_transform_kwargs=tuple(sorted(kwargs.items())),
      distill_alpha=c.distill.alpha if c.distill.teacher else 0.0,
      distill_temperature=c.distill.temperature, seed=c.seed,
      loss_kwargs=tuple(sorted(c.loss_kwargs.to_dict().items())), freeze_bn=finetune.freeze_bn(c),
      remat=c.get('remat', 'none'))


def resolve(config: ml_collections.ConfigDict, num_classes: int, num_train: Optional[int],
            mesh) -> dict[str, Any]:
  """Every value derived from the config (after overrides) and the data, in one dict."""
  c = config
  spec = get_spec(c.model)
  image_size = c.image_size or spec.input_size
  eval_size = c.eval.image_size or image_size
  a = c.aug
  mean, std = tuple(a.mean or spec.mean), tuple(a.std or spec.std)
  for field, v in (('mean', mean), ('std', std)):
    if len(v) != 3 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
      raise ValueError(f'config.aug.{field} must be 3 numbers (per RGB channel, images scaled to '
                       f'0-1), got {v!r}; e.g. --config.aug.{field}="{tuple(getattr(spec, field))}".')
  n_dev = mesh.devices.size
  mesh_lib.check_batch_size(c.batch_size, n_dev, c.optim.grad_accum_steps, jax.process_count())
  eval_bs = c.eval.batch_size or c.batch_size
  eval_bs = int(math.ceil(eval_bs / n_dev) * n_dev)
  out: dict[str, Any] = {
      'model': c.model, 'family': spec.family, 'num_classes': num_classes,
      'image_size': image_size, 'eval_image_size': eval_size,
      'eval_crop_pct': a.eval_crop_pct or spec.crop_pct,
      'eval_interpolation': a.eval_interpolation or spec.interpolation,
      'mean': mean, 'std': std, 'eval_batch_size': eval_bs,
      'lr': optim.scaled_lr(c), 'devices': n_dev, 'processes': jax.process_count(),
      'mesh': dict(mesh.shape), 'bn_groups': mesh_lib.bn_num_groups(mesh, c.sharding.bn_group_size),
  }
  out['train_preprocess'] = preprocess.train_spec(
      image_size, scale=a.crop_scale, ratio=a.crop_ratio, interpolation=a.interpolation,
      hflip=a.hflip, mean=mean, std=std, auto_augment=a.auto_augment,
      color_jitter=a.color_jitter, reprob=a.reprob,
      remode=a.remode, recount=a.recount, ops=a.ops, post_ops=a.post_ops)
  out['eval_preprocess'] = preprocess.eval_spec(
      eval_size, crop_pct=out['eval_crop_pct'], interpolation=out['eval_interpolation'],
      mean=mean, std=std)
  if num_train is not None:
    # an epoch is len_factor x the split's samples (RASampler's meaning; 1 for other samplers)
    spe = int(num_train * c.data.sampler_kwargs.get('len_factor', 1.0)) // c.batch_size
    if spe == 0:
      raise ValueError(f'the training split has {num_train} examples, fewer than one batch of '
                       f'{c.batch_size}; lower --config.batch_size.')
    total = c.num_train_steps if c.num_train_steps > 0 else int(round(c.num_epochs * spe))
    out.update(steps_per_epoch=spe, total_steps=total)
    out['checkpoint_every'] = c.checkpoint.every_steps if c.checkpoint.every_steps > 0 else spe
    out['eval_every'] = c.eval.every_steps if c.eval.every_steps > 0 else spe
  out['step_config'] = step_config(c, num_classes, out['bn_groups'], out.get('steps_per_epoch', 1))
  if c.distill.teacher and out['step_config'].batch_transform:
    raise ValueError('distillation with a batch transform (mixup/cutmix) is not supported yet: '
                     'the teacher would see the transformed images; disable one of them.')
  return out


def check_paths(c: ml_collections.ConfigDict, workdir: str) -> None:
  """Bucket paths of the run (workdir, data, starting weights) answer, before anything is
  written: :class:`ghostnets_jax.storage.StorageError` naming what to set otherwise."""
  paths = {'--workdir': workdir, 'config.data.data_dir': c.data.get('data_dir'),
           'config.data.manual_dir': c.data.get('manual_dir')}
  paths.update({f'config.init.{k}': c.init.get(k) for k in ('checkpoint', 'torch_checkpoint', 'workdir')})
  paths['config.distill.workdir'] = c.distill.get('workdir')
  for what, p in paths.items():
    if p:
      storage.check_reachable(p, what)


def build(config: ml_collections.ConfigDict, workdir: str, *, train: bool = True) -> Experiment:
  c = config
  check_paths(c, workdir)
  mesh = mesh_lib.make_mesh(c.sharding.mesh_shape, c.sharding.axis_names)
  resuming = is_run_checkpoint(storage.path(workdir) / 'checkpoints')   # not reading init.*
  finetune.validate(c, check_init=train and not resuming)
  train_source, eval_source = datasets.open_splits(c.data, train=train)
  if train_source is None and eval_source is None:
    raise ValueError('no evaluation data: set config.data.eval_split (TFDS) or config.data.eval_dir '
                     '(data.source=folder).')
  num_classes = c.num_classes or (train_source or eval_source).num_classes
  resolved = resolve(c, num_classes, len(train_source) if train_source else None, mesh)
  model = build_model(c, num_classes)
  total = resolved.get('total_steps', 1)
  schedule = optim.make_schedule(c, resolved.get('steps_per_epoch', 1), total)
  tx = optim.make_optimizer(c, schedule)
  abstract = state_lib.abstract_state(model, tx, resolved['image_size'], bool(c.ema.decay),
                                      step_lib.get_loss(c.loss).init_params)
  shardings = state_lib.state_shardings(mesh, abstract, c.sharding.fsdp_min_size)
  record = (workdir_lib.identity(c, num_classes, train), workdir_lib.state_signature(abstract))
  rewrite = workdir_lib.check(workdir, *record, has_checkpoints=resuming,   # before any write
                              resume=c.get('resume', 'auto'), action='resume' if train else 'evaluate')
  ckpt = Checkpointer(storage.path(workdir) / 'checkpoints', keep=c.checkpoint.keep,
                      keep_best=c.checkpoint.keep_best, async_save=c.checkpoint.async_save)
  exp = Experiment(c, workdir, resolved, mesh, model, tx, schedule, abstract, shardings,
                   train_source, eval_source, ckpt, run_record=record if rewrite else None)
  if c.distill.teacher and train:
    exp.teacher, exp.teacher_vars = build_teacher(c, num_classes, resolved['image_size'], mesh)
  return exp


def build_model(c: ml_collections.ConfigDict, num_classes: int):
  """``create_model`` with the config's dtype, dropout, drop-path, then ``model_kwargs`` set
  on the module (any field, e.g. a smaller ``cfgs`` for tests)."""
  kwargs = {k: c[k] for k in ('drop_rate', 'drop_path_rate') if c.get(k) is not None}
  model = create_model(c.model, num_classes=num_classes, dtype=_dtype(c.dtype), **kwargs)
  fields = dict(c.model_kwargs.to_dict())
  unknown = sorted(set(fields) - set(module_fields(type(model))))
  if unknown:
    raise ValueError(f'config.model_kwargs: {type(model).__name__} has no field(s) {unknown}; '
                     f'it has {module_fields(type(model))}')
  return model.clone(**fields) if fields else model


def build_teacher(c: ml_collections.ConfigDict, num_classes: int, image_size: int, mesh):
  """The distillation teacher (a registry model) and its variables, replicated on the mesh."""
  t = c.distill
  teacher = create_model(t.teacher, num_classes=num_classes, dtype=_dtype(c.dtype))
  if t.torch_checkpoint:
    from ghostnets_jax.convert import load_torch_checkpoint
    variables = load_torch_checkpoint(t.teacher, t.torch_checkpoint, num_classes=num_classes)
  elif t.workdir:
    variables = restore_variables(t.workdir, t.step, t.use_ema)
  elif t.allow_random:
    logging.warning('distillation teacher %s has RANDOM weights (distill.allow_random)', t.teacher)
    from ghostnets_jax.initialize import init_variables
    variables = init_variables(teacher, (1, image_size, image_size, 3))
  else:
    raise ValueError('config.distill.teacher needs weights: set distill.torch_checkpoint (a '
                     'PyTorch file) or distill.workdir (a ghostnets_jax run).')
  return teacher, jax.device_put(variables, mesh_lib.replicated(mesh))


def _write_configs(exp: Experiment) -> None:
  if jax.process_index() != 0:
    return
  if exp.run_record is not None:
    workdir_lib.write(exp.workdir, *exp.run_record)
  workdir = storage.path(exp.workdir)
  storage.write_text(workdir / 'config.json',
                     exp.config.to_json_best_effort(indent=2, sort_keys=True))
  resolved = {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
              for k, v in exp.resolved.items()}
  storage.write_text(workdir / 'resolved_config.json',
                     json.dumps(resolved, indent=2, sort_keys=True, default=str))


class StopSignal:
  """SIGTERM / SIGINT -> finish the current step, checkpoint, exit cleanly (preemption).

  :meth:`requested` is polled at every step. With several processes (a pod, a cluster) the
  signal may reach only some of them; every process then contributes its flag to a tiny
  collective each step (a max over a process-sharded array, dispatched asynchronously) and acts
  on the result of the previous step's one, which is ready by then. All processes therefore see
  the same answer at the same step and save that step together, and the host never waits for the
  step in flight.
  """

  def __init__(self, mesh=None):
    self._flag = False
    self._previous = {}
    self._mesh = mesh
    self._vote_fn = None
    self._pending = None
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:   # not the main thread: no handler (e.g. a library caller's thread)
        pass

  def _handle(self, signum, frame) -> None:
    logging.warning('signal %d: checkpointing after this step, then stopping', signum)
    self._flag = True

  def requested(self) -> bool:
    if jax.process_count() == 1 or self._mesh is None:
      return self._flag
    if self._vote_fn is None:
      self._vote_fn = jax.jit(jnp.max, out_shardings=mesh_lib.replicated(self._mesh))
    local = np.full((jax.local_device_count(),), int(self._flag), np.int32)
    vote = jax.make_array_from_process_local_data(mesh_lib.batch_sharding(self._mesh), local)
    previous, self._pending = self._pending, self._vote_fn(vote)
    return previous is not None and bool(previous)

  def restore(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class NonFiniteGuard:
  """Collects each step's non-finite flag (on device, no sync) and checks them at log steps and
  before every save. The step itself never applies a non-finite update; ``stop`` then raises
  naming the first bad step, ``skip`` counts the skipped steps (kept in the checkpoint)."""

  def __init__(self, mode: str, skipped: int = 0):
    if mode not in ('stop', 'skip'):
      raise ValueError(f"config.on_nonfinite must be 'stop' or 'skip', got {mode!r}")
    self.mode, self.skipped, self._pending = mode, skipped, []

  def add(self, step: int, metrics) -> None:
    self._pending.append((step, metrics.nonfinite.total))

  def check(self, checkpointer: Checkpointer) -> None:
    flags = jax.device_get([f for _, f in self._pending])
    bad = [s for (s, _), f in zip(self._pending, flags) if f > 0]
    self._pending = []
    if not bad:
      return
    if self.mode == 'stop':
      checkpointer.wait()
      last_good = checkpointer.latest_step()
      raise FloatingPointError(
          f'non-finite loss or gradient at step {bad[0]} (steps {bad}); training stopped, the '
          f'last good checkpoint (step {last_good}) is kept and nothing after it was saved. Lower '
          'optim.lr or enable optim.grad_clip_norm and rerun the same command to resume from '
          "it, or set --config.on_nonfinite=skip to skip such steps.")
    self.skipped += len(bad)
    logging.warning('skipped %d step(s) with a non-finite loss or gradient: %s (%d in this run)',
                    len(bad), bad, self.skipped)


def _eval_variables(exp: Experiment, state: state_lib.TrainState) -> list[tuple[str, dict]]:
  """[(prefix, variables)]: raw weights, and EMA weights when EMA is on."""
  out = [('', state.variables(False))]
  if state.ema:
    out.append(('ema_', state.variables(True)))
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       mode: str = 'train_and_eval') -> dict[str, float]:
  """Trains (resuming from ``workdir`` when it holds checkpoints) and evaluates.

  Returns the last eval metrics (``top1``, ``top5``, ``loss`` and ``ema_*``), or the last train
  metrics with ``mode='train'``.
  """
  if mode not in ('train', 'train_and_eval'):
    raise ValueError(f'mode must be train or train_and_eval, got {mode!r}')
  exp = build(config, workdir, train=True)
  c, r = exp.config, exp.resolved
  if mode == 'train_and_eval' and exp.eval_source is None:
    raise ValueError('--mode=train_and_eval needs evaluation data: set config.data.eval_split '
                     '(TFDS) or config.data.eval_dir (data.source=folder), or use --mode=train.')
  _write_configs(exp)
  writer, logdir = summary.create_writer(workdir, just_logging=jax.process_index() > 0)
  train_iter = exp.train_iterator()
  start = exp.checkpointer.latest_step()
  if start is not None:
    start, state, data_state = exp.restore('latest', quarantine=True)
    train_iter.set_state(data_state)
    skipped = int(data_state.get('nonfinite_skipped', 0))
    logging.info('resumed at step %d (input position %s)', start, data_state)
  else:
    start, state, skipped = 0, exp.init_state(), 0
    writer.write_hparams({k: v for k, v in _flat(c.to_dict()).items()})
  total = r['total_steps']
  logging.info('training %s for %d steps (%d/epoch), global batch %d on %d devices, lr %.4g',
               c.model, total, r['steps_per_epoch'], c.batch_size, r['devices'], r['lr'])
  hooks = [periodic_actions.ReportProgress(num_train_steps=total, writer=writer,
                                           every_steps=c.log_every_steps)]
  if c.profile.start_step >= 0 and jax.process_index() == 0:
    hooks.append(periodic_actions.Profile(logdir=logdir, first_profile=c.profile.start_step,
                                          num_profile_steps=c.profile.num_steps))
  train_metrics, last_eval, last_train, t_log, s_log = None, {}, {}, time.time(), start
  step = start
  stop = min(total, c.stop_after_step) if c.stop_after_step > 0 else total
  signals = StopSignal(exp.mesh)
  guard = NonFiniteGuard(c.on_nonfinite, skipped)
  for step in range(start + 1, stop + 1):
    with jax.profiler.StepTraceAnnotation('train', step_num=step):
      batch = mesh_lib.global_batch(next(train_iter), exp.batch_sharding)
      if step == start + 1:
        logging.info('input batch: %s', mesh_lib.describe_batch(batch))
      state, m = exp.train_step(state, batch)
    guard.add(step, m)
    train_metrics = m if train_metrics is None else train_metrics.merge(m)
    for h in hooks:
      h(step)
    if step % c.log_every_steps == 0 or step == total:
      guard.check(exp.checkpointer)
      scalars = {f'train/{k}': float(v) for k, v in train_metrics.compute().items()}
      dt = time.time() - t_log
      sps = (step - s_log) / max(dt, 1e-9)
      scalars.update({'train/steps_per_sec': sps, 'train/images_per_sec': sps * c.batch_size,
                      'train/epoch': step / r['steps_per_epoch']})
      writer.write_scalars(step, scalars)
      writer.flush()   # a bucket workdir gets the events now (see train/summary.py)
      logging.info('step %d/%d  loss %.4f  top1 %.4f  lr %.4g  %.2f steps/s  %.0f img/s  ETA %s',
                   step, total, scalars['train/loss'], scalars['train/top1'], scalars['train/lr'],
                   sps, sps * c.batch_size, _eta((total - step) / max(sps, 1e-9)))
      last_train = scalars
      train_metrics, t_log, s_log = None, time.time(), step
    eval_now = mode == 'train_and_eval' and (step % r['eval_every'] == 0 or step == total)
    metrics = None
    if eval_now:
      last_eval = {}
      for prefix, variables in _eval_variables(exp, state):
        res = exp.evaluate(variables, f'eval {prefix or "raw"}')
        last_eval.update({f'{prefix}{k}': v for k, v in res.items()})
      writer.write_scalars(step, {f'eval/{k}': v for k, v in last_eval.items()})
      logging.info('eval at step %d: %s', step, _fmt(last_eval))
      key = f'ema_{BEST_METRIC}' if state.ema and c.eval.use_ema else BEST_METRIC
      metrics = {BEST_METRIC: last_eval[key]}
    stopping = signals.requested()   # the same answer on every process
    if step % r['checkpoint_every'] == 0 or step == stop or stopping:
      guard.check(exp.checkpointer)
      data_state = train_iter.get_state()
      if guard.skipped:
        data_state['nonfinite_skipped'] = guard.skipped
      exp.checkpointer.save(step, state, data_state, metrics)
    if stopping:
      logging.warning('stopped at step %d on a signal; rerun the same command to resume', step)
      break
  signals.restore()
  guard.check(exp.checkpointer)
  exp.checkpointer.wait()
  writer.close()
  exp.checkpointer.close()
  if mode == 'train':
    return last_train
  return last_eval


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Restores ``config.eval.checkpoint`` ('latest', 'best' or a step) from ``workdir`` and
  evaluates its EMA (``config.eval.use_ema`` and the run had EMA) or raw weights."""
  storage.check_reachable(workdir, '--workdir')
  if not is_run_checkpoint(storage.path(workdir) / 'checkpoints'):
    raise FileNotFoundError(f'no checkpoint in {workdir}/checkpoints: --mode=eval evaluates a '
                            'checkpoint of a training run; pass that run\'s --workdir (nothing '
                            'was created).')
  exp = build(config, workdir, train=False)
  c = exp.config
  step, state, _ = exp.restore(c.eval.checkpoint)
  use_ema = bool(c.eval.use_ema and state.ema)
  res = exp.evaluate(state.variables(use_ema), f'eval step {step}')
  res.update(step=step, weights='ema' if use_ema else 'raw')
  logging.info('eval of %s step %d (%s weights): %s', workdir, step, res['weights'], _fmt(res))
  if jax.process_index() == 0:
    storage.write_text(storage.path(workdir) / f'eval_step{step}_{res["weights"]}.json',
                       json.dumps(res, indent=2))
  exp.checkpointer.close()
  return res


def _flat(d: dict, prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v if isinstance(v, (int, float, str, bool)) else str(v)
  return out


def _fmt(m: dict) -> str:
  return '  '.join(f'{k} {v:.4f}' if isinstance(v, float) else f'{k} {v}' for k, v in m.items())


def _eta(seconds: float) -> str:
  s = int(seconds)
  return f'{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}'
