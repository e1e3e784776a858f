"""Assembly of a run: :func:`build` turns a config and a workdir into an :class:`Experiment`.

The experiment holds what the loop uses: the mesh, the model (and a distillation teacher), the
input data, the optimizer and schedule, the abstract state and its shardings, the jitted steps,
the checkpointer and the extra evaluators. Every check that can refuse a run (paths, workdir,
data, config) runs here, before anything is written.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import sys
from typing import TYPE_CHECKING, Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ghostnets_jax import storage
from ghostnets_jax.errors import ConfigError
from ghostnets_jax.registry import create_model, module_fields
from ghostnets_jax.train import finetune, optim, state as state_lib, step as step_lib
from ghostnets_jax.train import mesh as mesh_lib
from ghostnets_jax.train import workdir as workdir_lib
from ghostnets_jax.train.checkpoint import Checkpointer, is_run_checkpoint, restore_variables
from ghostnets_jax.train.run_config import RunConfig, resolve

if TYPE_CHECKING:   # the data modules load TensorFlow: imported where data is built
  from ghostnets_jax.data import datasets, pipeline
  from ghostnets_jax.train import evaluators


def _dtype(name: str) -> Any:
  dtypes = {'float32': None, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}
  if name not in dtypes:
    raise ConfigError(f'config.dtype must be one of {sorted(dtypes)}, got {name!r}')
  return dtypes[name]


@dataclasses.dataclass
class Experiment:
  """Everything built from a config: mesh, model, data, optimizer, jitted steps, checkpointer."""
  config: ml_collections.ConfigDict
  workdir: str
  resolved: RunConfig
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
  evaluators: dict[str, evaluators.Evaluator] = dataclasses.field(default_factory=dict)
  _train_step: Any = dataclasses.field(default=None, repr=False)
  _eval_step: Any = dataclasses.field(default=None, repr=False)

  @property
  def compiler_options(self) -> Optional[dict]:
    return self.config.compiler_options.to_dict() or None

  @property
  def batch_sharding(self):
    return mesh_lib.batch_sharding(self.mesh)

  # ----------------------------------------------------------------------------------- data
  def train_iterator(self) -> pipeline.TrainIterator:
    from ghostnets_jax.data import pipeline
    c, r = self.config, self.resolved
    sampler = pipeline.make_sampler(
        c.data.sampler, len(self.train_source), c.batch_size, seed=c.seed,
        process_index=jax.process_index(), process_count=jax.process_count(),
        **c.data.sampler_kwargs.to_dict())
    return pipeline.TrainIterator(self.train_source, sampler, r.train_preprocess,
                                  c.batch_size // jax.process_count(), seed=c.seed,
                                  threads=c.data.threads, prefetch=c.data.prefetch)

  def eval_batches(self):
    from ghostnets_jax.data import pipeline
    r = self.resolved
    ds, steps = pipeline.eval_dataset(
        self.eval_source, r.eval_preprocess, r.eval_batch_size // jax.process_count(),
        process_index=jax.process_index(), process_count=jax.process_count(),
        threads=self.config.data.threads)
    return ds, steps

  # ---------------------------------------------------------------------------------- state
  def init_state(self) -> state_lib.TrainState:
    c = self.config
    state = state_lib.create_state(self.model, self.tx, self.resolved.image_size,
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
      fn = step_lib.make_train_step(self.model, self.tx, self.resolved.step_config,
                                    self.schedule, self.teacher)
      self._train_step = jax.jit(fn, out_shardings=(self.shardings, mesh_lib.replicated(self.mesh)),
                                 donate_argnums=0, compiler_options=self.compiler_options)
    return self._train_step(state, batch, self.teacher_vars)

  def evaluate(self, variables: dict, desc: str = 'eval') -> dict[str, float]:
    """Top-1/top-5/loss over the whole eval split (padded batches masked out)."""
    if self._eval_step is None:
      fn = step_lib.make_eval_step(self.model, self.resolved.num_classes)
      self._eval_step = jax.jit(fn, out_shardings=mesh_lib.replicated(self.mesh),
                                compiler_options=self.compiler_options)
    ds, steps = self.eval_batches()
    total = None
    for batch in _progress(ds.as_numpy_iterator(), steps, desc):
      m = self._eval_step(variables, mesh_lib.global_batch(batch, self.batch_sharding))
      total = m if total is None else total.merge(m)
    out = {k: float(v) for k, v in total.compute().items()}
    out['count'] = int(round(float(total.top1.count)))
    for evaluator in self.evaluators.values():
      out.update(evaluator(variables))
    return out


def _progress(it, total: int, desc: str):
  """A tqdm bar on an interactive console of process 0; plain iteration otherwise."""
  if jax.process_index() != 0 or not sys.stderr.isatty():
    return it
  from tqdm import tqdm
  return tqdm(it, total=total, desc=desc, leave=False)


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
  from ghostnets_jax.data import datasets
  from ghostnets_jax.train import evaluators
  c = config
  check_paths(c, workdir)
  mesh = mesh_lib.make_mesh(c.sharding.mesh_shape, c.sharding.axis_names)
  resuming = is_run_checkpoint(storage.path(workdir) / 'checkpoints')   # not reading init.*
  finetune.validate(c, check_init=train and not resuming)
  train_source, eval_source = datasets.open_splits(c.data, train=train)
  if train_source is None and eval_source is None:
    raise ConfigError('no evaluation data: set config.data.eval_split (TFDS) or '
                      'config.data.eval_dir (data.source=folder).')
  num_classes = c.num_classes or (train_source or eval_source).num_classes
  resolved = resolve(c, num_classes, len(train_source) if train_source else None, mesh)
  model = build_model(c, num_classes)
  schedule = optim.make_schedule(c, resolved.steps_per_epoch or 1, resolved.total_steps or 1)
  tx = optim.make_optimizer(c, schedule)
  abstract = state_lib.abstract_state(model, tx, resolved.image_size, bool(c.ema.decay),
                                      step_lib.get_loss(c.loss).init_params)
  shardings = state_lib.state_shardings(mesh, abstract, c.sharding.fsdp_min_size)
  record = (workdir_lib.identity(c, num_classes, train), workdir_lib.state_signature(abstract))
  rewrite = workdir_lib.check(workdir, *record, has_checkpoints=resuming,   # before any write
                              resume=c.get('resume', 'auto'), action='resume' if train else 'evaluate')
  ckpt = Checkpointer(storage.path(workdir) / 'checkpoints', keep=c.checkpoint.keep,
                      keep_best=c.checkpoint.keep_best, async_save=c.checkpoint.async_save)
  teacher = teacher_vars = None
  if c.distill.teacher and train:
    teacher, teacher_vars = build_teacher(c, num_classes, resolved.image_size, mesh)
  extra = {}
  if eval_source is not None:
    extra = {name: evaluators.get_evaluator(name)(
        model, mesh, eval_source, resolved, threads=c.data.threads, seed=c.seed,
        **c.eval.evaluator_kwargs.get(name, ml_collections.ConfigDict()).to_dict())
             for name in c.eval.evaluators}
  return Experiment(c, workdir, resolved, mesh, model, tx, schedule, abstract, shardings,
                    train_source, eval_source, ckpt, teacher, teacher_vars,
                    run_record=record if rewrite else None, evaluators=extra)


def build_model(c: ml_collections.ConfigDict, num_classes: int):
  """``create_model`` with the config's dtype, dropout, drop-path, then ``model_kwargs`` set
  on the module (any field, e.g. a smaller ``cfgs`` for tests)."""
  kwargs = {k: c[k] for k in ('drop_rate', 'drop_path_rate') if c.get(k) is not None}
  model = create_model(c.model, num_classes=num_classes, dtype=_dtype(c.dtype), **kwargs)
  fields = dict(c.model_kwargs.to_dict())
  unknown = sorted(set(fields) - set(module_fields(type(model))))
  if unknown:
    raise ConfigError(f'config.model_kwargs: {type(model).__name__} has no field(s) {unknown}; '
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
    raise ConfigError('config.distill.teacher needs weights: set distill.torch_checkpoint (a '
                      'PyTorch file) or distill.workdir (a ghostnets_jax run).')
  return teacher, jax.device_put(variables, mesh_lib.replicated(mesh))


def write_configs(exp: Experiment) -> None:
  """``run.json`` (when new or rewritten), ``config.json`` and ``resolved_config.json``."""
  if jax.process_index() != 0:
    return
  if exp.run_record is not None:
    workdir_lib.write(exp.workdir, *exp.run_record)
  workdir = storage.path(exp.workdir)
  storage.write_text(workdir / 'config.json',
                     exp.config.to_json_best_effort(indent=2, sort_keys=True))
  storage.write_text(workdir / 'resolved_config.json', json.dumps(
      exp.resolved.to_json_dict(), indent=2, sort_keys=True, default=str))
