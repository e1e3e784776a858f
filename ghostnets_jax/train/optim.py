"""Optimizers, learning-rate schedules and the weight-decay mask, built from a config."""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ghostnets_jax.errors import ConfigError

OPTIMIZERS = ('sgd', 'rmsprop_tf', 'adamw', 'lamb', 'psgd_kron')
SCHEDULES = ('cosine', 'step', 'exponential', 'constant', 'polynomial')


def scaled_lr(config: ml_collections.ConfigDict) -> float:
  """``optim.lr`` is stated for a global batch of ``optim.lr_ref_batch``: scale it linearly."""
  return config.optim.lr * config.batch_size / config.optim.lr_ref_batch


def make_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int
                  ) -> optax.Schedule:
  """Linear warmup from ``schedule.warmup_init_lr`` over ``warmup_epochs``, then ``name``.

  cosine: to ``end_lr`` at the last step. step: times ``decay_rate`` at each epoch in
  ``milestones`` (or every ``decay_epochs``). exponential: times ``decay_rate`` every
  ``decay_epochs`` (fractional epochs allowed, staircase). constant. polynomial (the lr of the
  MindSpore ResNet-50 THOR recipe): ``peak * (1 - e / end_epoch) ** power`` with ``e`` the epochs
  since the warmup ended and ``end_epoch`` counted the same way (it may lie past the last step,
  as in THOR: 70 for a 45-epoch run; 0 from there on). ``per_epoch``: the
  schedule after warmup is held constant within each epoch at its value at the epoch's start
  (PyTorch's ``CosineAnnealingLR`` stepped once per epoch, as Huawei Vega's ``by_epoch: True``).
  """
  s = config.schedule
  peak = scaled_lr(config)
  warmup = min(int(round(s.warmup_epochs * steps_per_epoch)), total_steps)
  rest = max(total_steps - warmup, 1)
  if s.name == 'cosine':
    main = optax.cosine_decay_schedule(peak, rest, alpha=s.end_lr / peak if peak else 0.0)
  elif s.name == 'step':
    epochs = list(s.milestones) if s.milestones else [
        s.decay_epochs * k for k in range(1, int(total_steps / steps_per_epoch / s.decay_epochs) + 1)]
    bounds = {int(round(e * steps_per_epoch)) - warmup: s.decay_rate for e in epochs
              if int(round(e * steps_per_epoch)) > warmup}
    main = optax.piecewise_constant_schedule(peak, bounds)
  elif s.name == 'exponential':
    main = optax.exponential_decay(peak, max(int(round(s.decay_epochs * steps_per_epoch)), 1),
                                   s.decay_rate, staircase=True, end_value=s.end_lr or None)
  elif s.name == 'constant':
    main = optax.constant_schedule(peak)
  elif s.name == 'polynomial':
    if s.end_epoch <= 0:
      raise ConfigError(f'schedule.end_epoch must be > 0 for the polynomial schedule, got '
                       f'{s.end_epoch}; THOR uses 70 for a 45-epoch run')
    end = max(int(round(s.end_epoch * steps_per_epoch)), 1)
    main = optax.polynomial_schedule(peak, 0.0, s.power, end)
  else:
    raise ConfigError(f'unknown schedule {s.name!r}; choose one of {SCHEDULES}')
  if s.per_epoch:
    smooth, spe = main, max(int(steps_per_epoch), 1)
    main = lambda t: smooth((t // spe) * spe)  # noqa: E731
  if warmup == 0:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(s.warmup_init_lr, peak, warmup), main], [warmup])


def weight_decay_mask(params: Any, exclude_1d: bool = True, exclude_norm: bool = False) -> Any:
  """True where weight decay applies: everything but 1-D leaves (BN scale/bias, biases) when
  ``exclude_1d``; everything but BatchNorm's scale and bias when ``exclude_norm`` (MindSpore
  optimizers' default: no decay on parameters named ``gamma``/``beta``; biases are decayed)."""
  def visit(tree):
    norm = exclude_norm and 'scale' in tree   # a BatchNorm: {'scale', 'bias'}
    return {k: visit(v) if isinstance(v, Mapping) else jax.tree_util.tree_map(   # arrays; optax's
            lambda p: not norm and (not exclude_1d or p.ndim > 1), v)         # MaskedNode: no leaf
            for k, v in tree.items()}
  return visit(params) if isinstance(params, Mapping) else jax.tree_util.tree_map(
      lambda p: not exclude_1d or p.ndim > 1, params)


def make_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule
                   ) -> optax.GradientTransformation:
  """The optimizer of ``config.optim`` with clipping and (masked) weight decay.

  sgd: torch SGD (coupled L2 decay, momentum, optional Nesterov). rmsprop_tf: TF/timm
  RMSpropTF (accumulator starts at 1, eps inside the sqrt, lr inside the momentum, coupled
  decay). adamw / lamb: decoupled decay. psgd_kron: PSGD with Kronecker-factored
  preconditioners (Li, 2018; ``psgd-jax``), a second-order method (:func:`psgd_kron`). With ``config.finetune`` freezing the trunk or scaling
  its lr, the trunk and the head get their own copy (:func:`split_trunk`); clipping stays global.
  """
  o = config.optim
  mask = lambda p: weight_decay_mask(p, o.wd_exclude_1d, o.wd_exclude_norm)  # noqa: E731
  parts = []
  if o.name == 'sgd':
    parts += [optax.add_decayed_weights(o.weight_decay, mask),
              optax.sgd(schedule, momentum=o.momentum or None, nesterov=o.nesterov)]
  elif o.name == 'rmsprop_tf':
    parts += [optax.add_decayed_weights(o.weight_decay, mask),
              optax.rmsprop(schedule, decay=o.rms_decay, eps=o.eps, initial_scale=1.0,
                            eps_in_sqrt=True, momentum=o.momentum or None, nesterov=o.nesterov)]
  elif o.name == 'adamw':
    parts.append(optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay,
                             mask=mask))
  elif o.name == 'lamb':
    parts.append(optax.lamb(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay,
                            mask=mask))
  elif o.name == 'psgd_kron':
    parts.append(psgd_kron(o, schedule, mask))
  else:
    raise ConfigError(f'unknown optimizer {o.name!r}; choose one of {OPTIMIZERS}')
  ft = config.get('finetune')
  if ft is not None and (ft.freeze == 'trunk' or ft.trunk_lr_mult != 1.0):
    parts = [split_trunk(optax.chain(*parts), 0.0 if ft.freeze == 'trunk' else ft.trunk_lr_mult)]
  if o.grad_clip_norm:
    parts.insert(0, optax.clip_by_global_norm(o.grad_clip_norm))
  return optax.chain(*parts)


def psgd_kron(o: ml_collections.ConfigDict, schedule: optax.Schedule, mask: Any
              ) -> optax.GradientTransformation:
  """PSGD-Kron (``psgd_jax.kron``): momentum ``b1``, per-dimension Kronecker-factored
  preconditioners (triangular up to ``precond_max_size``, diagonal above), fitted online with
  step ``precond_lr``. The preconditioner is refitted with probability 1 for the first
  ``precond_flat_steps`` steps, then with a probability annealed exponentially (rate
  ``precond_decay`` per step) down to ``precond_update_prob_min``. Decoupled weight decay
  (times the lr), as in AdamW."""
  from ghostnets_jax.train.psgd_compat import import_psgd
  psgd = import_psgd()
  prob = psgd.precond_update_prob_schedule(
      max_prob=1.0, min_prob=o.precond_update_prob_min, decay=o.precond_decay,
      flat_start=o.precond_flat_steps)
  return psgd.kron(schedule, b1=o.b1, weight_decay=o.weight_decay, weight_decay_mask=mask,
              preconditioner_update_probability=prob, max_size_triangular=o.precond_max_size,
              preconditioner_lr=o.precond_lr, precond_update_precision='float32',
              precond_grads_precision='float32')


def trunk_labels(params: Any) -> Any:
  """'head' for the classifier (and the loss's own parameters), 'trunk' for everything else."""
  from ghostnets_jax.train.state import is_head
  return jax.tree_util.tree_map_with_path(
      lambda path, _: 'head' if is_head(tuple(str(getattr(k, 'key', k)) for k in path)) else 'trunk',
      params)


def split_trunk(tx: optax.GradientTransformation, trunk_lr_mult: float
                ) -> optax.GradientTransformation:
  """``tx`` on the head; on the trunk ``tx`` with its updates times ``trunk_lr_mult`` (the same
  as a ``trunk_lr_mult`` times smaller lr for every optimizer here), or nothing at all when it
  is 0 (frozen: zero updates, no optimizer state)."""
  if trunk_lr_mult < 0:
    raise ConfigError(f'finetune.trunk_lr_mult must be >= 0, got {trunk_lr_mult}')
  trunk = (optax.set_to_zero() if trunk_lr_mult == 0
           else optax.chain(tx, optax.scale(trunk_lr_mult)))
  return optax.multi_transform({'trunk': trunk, 'head': tx}, trunk_labels)


def global_norm(tree: Any) -> jax.Array:
  return optax.global_norm(tree).astype(jnp.float32)

