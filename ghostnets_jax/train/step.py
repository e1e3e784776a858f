"""The pure train and eval steps ``(state, batch) -> (state, metrics)``, jitted by the trainer.

Hook points (registries filled by other modules):
  * :func:`register_batch_transform`: on-device batch transforms inside the step, e.g. mixup /
    CutMix: ``fn(rng, images, targets, **kwargs) -> (images, targets)`` with soft targets.
  * :func:`register_loss`: ``fn(outputs, targets, batch, params, rng, **kwargs) -> loss`` (per
    example or the batch mean). ``outputs`` is what the model's ``method`` returns (logits, or a
    dict holding ``'logits'``, e.g. MultiGrain's embeddings); ``batch`` holds ``label`` and
    ``image_id``; ``params`` are the loss's own learnable parameters (``state.params[LOSS_KEY]``,
    e.g. MultiGrain's margin ``beta``), created by the registration's ``init_params``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from clu import metrics

from ghostnets_jax.errors import ConfigError
from ghostnets_jax.layers.norm import batch_norm_groups, frozen_batch_norm
from ghostnets_jax.train.state import TrainState

_BATCH_TRANSFORMS: dict[str, Callable[..., tuple[jax.Array, jax.Array]]] = {}
_LOSSES: dict[str, 'Loss'] = {}
LOSS_KEY = '_loss'   # state.params[LOSS_KEY]: learnable parameters of the loss (not the model's)


@dataclasses.dataclass(frozen=True)
class Loss:
  fn: Callable[..., jax.Array]
  method: Optional[str] = None                      # model method giving the outputs
  init_params: Optional[Callable[[], dict]] = None  # the loss's learnable parameters


def register_batch_transform(name: str):
  def deco(fn):
    _BATCH_TRANSFORMS[name] = fn
    return fn
  return deco


def get_batch_transform(name: str) -> Callable[..., tuple[jax.Array, jax.Array]]:
  if name not in _BATCH_TRANSFORMS:
    raise ValueError(f'unknown batch transform {name!r}; registered: {sorted(_BATCH_TRANSFORMS)}')
  return _BATCH_TRANSFORMS[name]


@register_batch_transform('mixup')
def mixup(rng: jax.Array, images: jax.Array, targets: jax.Array, **kwargs: Any
          ) -> tuple[jax.Array, jax.Array]:
  """timm's Mixup/CutMix (``ghostnets_jax.data.mixup``; ``kwargs``: MixupConfig fields). The
  targets arrive label-smoothed; mixing commutes with smoothing, so none is added here."""
  from ghostnets_jax.data.mixup import MixupConfig, mixup_cutmix
  return mixup_cutmix(rng, images, targets, MixupConfig(**kwargs, label_smoothing=0.0))


def register_loss(name: str, method: Optional[str] = None,
                  init_params: Optional[Callable[[], dict]] = None):
  """Registers ``fn(outputs, targets, batch, params, rng, **kwargs) -> loss`` as ``config.loss``."""
  def deco(fn):
    _LOSSES[name] = Loss(fn, method, init_params)
    return fn
  return deco


def get_loss(name: str) -> Loss:
  if name not in _LOSSES:
    raise ValueError(f'unknown loss {name!r}; registered: {sorted(_LOSSES)}')
  return _LOSSES[name]


def split_params(params: dict) -> tuple[dict, dict]:
  """(model params, loss params) of ``state.params``."""
  if LOSS_KEY not in params:
    return params, {}
  return {k: v for k, v in params.items() if k != LOSS_KEY}, params[LOSS_KEY]


def logits_of(outputs: Any) -> jax.Array:
  return outputs['logits'] if isinstance(outputs, dict) else outputs


@register_loss('softmax_ce')
def softmax_cross_entropy(outputs: Any, targets: jax.Array, batch: Any = None, params: Any = None,
                          rng: Any = None) -> jax.Array:
  del batch, params, rng
  return optax.softmax_cross_entropy(logits_of(outputs).astype(jnp.float32), targets)


def _beta() -> dict:
  from ghostnets_jax.losses import BETA_INIT
  return {'beta': jnp.asarray(BETA_INIT, jnp.float32)}


@register_loss('multigrain', method='outputs', init_params=_beta)
def multigrain(outputs: dict, targets: jax.Array, batch: dict, params: dict, rng: jax.Array,
               **kwargs: Any) -> jax.Array:
  """MultiGrain's ``lam * CE + (1 - lam) * margin`` (``ghostnets_jax.losses.multigrain_loss``)
  with the learnable ``beta``; positives are the repeated augmentations (same ``image_id``) of
  the ``repeated`` sampler. ``kwargs``: ``lam``, ``margin``, ``label_smoothing``, ...."""
  del targets
  from ghostnets_jax.losses import multigrain_loss
  loss, _ = multigrain_loss(outputs['logits'], outputs['embedding'], batch['label'],
                            batch['image_id'], params['beta'], rng, **kwargs)
  return loss


def smooth_targets(labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
  """Label-smoothed one-hot targets (``optax.smooth_labels``, as mixup and the losses use)."""
  return optax.smooth_labels(jax.nn.one_hot(labels, num_classes, dtype=jnp.float32), smoothing)


def distillation_loss(student: jax.Array, teacher: jax.Array, temperature: float) -> jax.Array:
  """``T^2 * KL(softmax(teacher/T) || softmax(student/T))`` per example (Hinton et al.)."""
  t = jax.nn.log_softmax(teacher.astype(jnp.float32) / temperature)
  s = jax.nn.log_softmax(student.astype(jnp.float32) / temperature)
  return temperature ** 2 * jnp.sum(jnp.exp(t) * (t - s), axis=-1)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  top = jax.lax.top_k(logits, min(k, logits.shape[-1]))[1]
  return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """What the step needs besides the state (static under jit)."""
  num_classes: int
  label_smoothing: float = 0.0
  loss: str = 'softmax_ce'
  bn_groups: int = 1
  grad_accum_steps: int = 1
  ema_decay: float = 0.0
  batch_transform: str = ''
  batch_transform_kwargs: tuple = ()
  loss_kwargs: tuple = ()
  distill_alpha: float = 0.0
  distill_temperature: float = 1.0
  seed: int = 0
  freeze_bn: bool = False       # BN normalises with its running statistics; they stay as they are
  remat: str = 'none'           # jax.checkpoint policy of the forward (REMAT_POLICIES)

  def __post_init__(self):
    remat_policy(self.remat)    # a bad name fails when the config is read, not at the first step


REMAT_POLICIES = ('none', 'nothing_saveable', 'dots_saveable', 'dots_with_no_batch_dims_saveable',
                  'everything_saveable')


def remat_policy(name: str) -> Optional[Callable[..., bool]]:
  """The ``jax.checkpoint_policies`` member named ``name`` (None for 'none': no remat).

  With a policy the model's forward is wrapped in ``jax.checkpoint``: the backward recomputes
  what the policy does not save (e.g. 'dots_saveable' keeps matmul outputs and recomputes the
  BN/activation/depthwise intermediates), trading compute for the activations' memory.
  """
  if name not in REMAT_POLICIES:
    raise ConfigError(f'config.remat={name!r} is not a rematerialisation policy; choose one of '
                      f'{REMAT_POLICIES} (e.g. --config.remat=dots_saveable).')
  return None if name == 'none' else getattr(jax.checkpoint_policies, name)


TrainMetrics = metrics.Collection.create(
    loss=metrics.Average.from_output('loss'), top1=metrics.Average.from_output('top1'),
    grad_norm=metrics.Average.from_output('grad_norm'), lr=metrics.LastValue.from_output('lr'),
    nonfinite=metrics.Average.from_output('nonfinite'))
EvalMetrics = metrics.Collection.create(
    loss=metrics.Average.from_output('loss'), top1=metrics.Average.from_output('top1'),
    top5=metrics.Average.from_output('top5'))


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, cfg: StepConfig,
                    schedule: optax.Schedule, teacher: Optional[nn.Module] = None
                    ) -> Callable[..., tuple[TrainState, Any]]:
  """``train_step(state, batch, teacher_vars=None) -> (state, TrainMetrics)`` (pure; jit it)."""
  loss = get_loss(cfg.loss)
  transform = get_batch_transform(cfg.batch_transform) if cfg.batch_transform else None

  def forward(model_params, batch_stats, images, rng_drop):
    with batch_norm_groups(cfg.bn_groups), frozen_batch_norm(cfg.freeze_bn):
      return model.apply({'params': model_params, 'batch_stats': batch_stats}, images, train=True,
                         mutable=['batch_stats'], rngs={'dropout': rng_drop}, method=loss.method)

  policy = remat_policy(cfg.remat)
  if policy is not None:
    forward = jax.checkpoint(forward, policy=policy)

  def micro_loss(params, batch_stats, mb, rng, teacher_vars):
    model_params, loss_params = split_params(params)
    rng_drop, rng_loss = jax.random.split(rng)
    outputs, updates = forward(model_params, batch_stats, mb['image'], rng_drop)
    per_example = loss.fn(outputs, mb['target'], mb, loss_params, rng_loss,
                          **dict(cfg.loss_kwargs))
    logits = logits_of(outputs)
    if teacher is not None and cfg.distill_alpha > 0:
      t_logits = logits_of(teacher.apply(teacher_vars, mb['image'], train=False))
      kd = distillation_loss(logits, jax.lax.stop_gradient(t_logits), cfg.distill_temperature)
      per_example = (1 - cfg.distill_alpha) * per_example + cfg.distill_alpha * kd
    return jnp.mean(per_example), (updates.get('batch_stats', batch_stats), logits)

  grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

  def train_step(state: TrainState, batch: dict, teacher_vars: Any = None):
    rng = jax.random.fold_in(jax.random.key(cfg.seed), state.step)
    rng_drop, rng_mix = jax.random.split(rng)
    labels = batch['label']
    mb = {**batch, 'target': smooth_targets(labels, cfg.num_classes, cfg.label_smoothing)}
    if transform is not None:
      mb['image'], mb['target'] = transform(rng_mix, mb['image'], mb['target'],
                                            **dict(cfg.batch_transform_kwargs))
    k = cfg.grad_accum_steps
    if k == 1:
      (loss, (stats, logits)), grads = grad_fn(state.params, state.batch_stats, mb, rng_drop,
                                               teacher_vars)
      correct = topk_correct(logits, labels, 1)
    else:
      def split(x):   # micro-batch j = rows j, j+k, ...: every device holds part of each
        return jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1)

      def body(carry, xs):
        g_acc, stats = carry
        mb, rng = xs
        (l, (stats, logits)), g = grad_fn(state.params, stats, mb, rng, teacher_vars)
        return (jax.tree_util.tree_map(jnp.add, g_acc, g), stats), (l, topk_correct(logits, mb['label'], 1))

      mbs = jax.tree_util.tree_map(split, mb)
      zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
      (grads, stats), (losses, correct) = jax.lax.scan(
          body, (zeros, state.batch_stats), (mbs, jax.random.split(rng_drop, k)))
      grads = jax.tree_util.tree_map(lambda g: g / k, grads)
      loss = jnp.mean(losses)
    if cfg.freeze_bn:
      stats = state.batch_stats
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema
    if ema:
      d = cfg.ema_decay
      ema = jax.tree_util.tree_map(lambda e, n: d * e + (1 - d) * n, ema,
                                   {'params': params, 'batch_stats': stats})
    # Divergence guard: a step whose loss or gradient is not finite changes nothing but the step
    # counter (the trainer then stops or counts it: config.on_nonfinite), so no NaN reaches the
    # state or a checkpoint. A finite step is unchanged bit for bit.
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, old)
    new = state.replace(step=state.step + 1,
                        **keep(dict(params=params, batch_stats=stats, opt_state=opt_state, ema=ema),
                               dict(params=state.params, batch_stats=state.batch_stats,
                                    opt_state=state.opt_state, ema=state.ema)))
    m = TrainMetrics.single_from_model_output(
        loss=jnp.where(ok, loss, 0.0), top1=jnp.mean(correct),
        grad_norm=jnp.where(ok, grad_norm, 0.0), lr=schedule(state.step),
        nonfinite=1.0 - ok.astype(jnp.float32))
    return new, m

  return train_step


def make_eval_step(model: nn.Module, num_classes: int) -> Callable[[dict, dict], Any]:
  """``eval_step(variables, batch) -> EvalMetrics`` (cross-entropy, top-1, top-5) over the
  examples with ``mask == 1``."""

  def eval_step(variables: dict, batch: dict):
    params, _ = split_params(variables['params'])
    outputs = model.apply({**variables, 'params': params}, batch['image'], train=False)
    logits = logits_of(outputs).astype(jnp.float32)
    labels = batch['label']
    targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    return EvalMetrics.single_from_model_output(
        loss=softmax_cross_entropy(logits, targets), top1=topk_correct(logits, labels, 1),
        top5=topk_correct(logits, labels, 5), mask=batch['mask'])

  return eval_step
