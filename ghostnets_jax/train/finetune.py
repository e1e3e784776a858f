"""Fine-tuning: where the starting weights come from, and what trains (``config.init``,
``config.finetune``; recipe in ``configs/finetune.py``).

* Starting weights (:func:`pretrained_variables`): ``init.checkpoint`` is a PyTorch file
  (``.pth``/``.pt``/``.bin``/``.safetensors``), a MindSpore ``.ckpt`` or a ghostnets_jax run (its
  workdir, ``checkpoints`` directory or one step's directory; ``init.step``, ``init.use_ema``),
  read by :func:`ghostnets_jax.convert.load_checkpoint`. The head is re-initialised when its
  shape differs, or always with ``finetune.reset_head``.
* What trains: ``finetune.freeze='trunk'`` gives the trunk (everything but the head,
  :data:`ghostnets_jax.train.state.HEAD_NAMES`) zero updates; ``finetune.trunk_lr_mult`` scales
  the trunk's updates (:func:`ghostnets_jax.train.optim.split_trunk`); ``finetune.freeze_bn`` runs
  every BatchNorm on its running statistics and keeps them (default: on exactly when the trunk is
  frozen, so a frozen trunk computes the same features in training and eval).
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import ml_collections

from ghostnets_jax import storage
from ghostnets_jax.errors import ConfigError, PathNotFoundError

FREEZE = ('none', 'trunk')


def freeze_bn(config: ml_collections.ConfigDict) -> bool:
  ft = config.get('finetune')
  if ft is None:
    return False
  return ft.freeze == 'trunk' if ft.freeze_bn is None else bool(ft.freeze_bn)


def validate(config: ml_collections.ConfigDict, *, check_init: bool = True) -> None:
  """Clear errors for fine-tuning fields that cannot work (before anything is built).

  ``check_init``: also check the starting weights (off when a run resumes from its own
  checkpoints and does not read them).
  """
  ft = config.get('finetune')
  if ft is not None:
    if ft.freeze not in FREEZE:
      raise ConfigError(f'config.finetune.freeze must be one of {FREEZE}, got {ft.freeze!r}.')
    if not ft.trunk_lr_mult >= 0:
      raise ConfigError(f'config.finetune.trunk_lr_mult must be >= 0 (0 = frozen trunk), got '
                       f'{ft.trunk_lr_mult}.')
  if check_init:
    _init_path(config)


def _init_path(config: ml_collections.ConfigDict) -> Optional[tuple[str, str]]:
  """``(field, path)`` of the starting weights, or None; errors for missing or ambiguous ones."""
  i = config.init
  paths = {k: i.get(k) for k in ('checkpoint', 'torch_checkpoint', 'workdir') if i.get(k)}
  if len(paths) > 1:
    raise ConfigError(f'set one of config.init.checkpoint / torch_checkpoint / workdir, not '
                     f'{sorted(paths)}.')
  if i.get('required') and not paths:
    raise ConfigError('this config fine-tunes pretrained weights: set --config.init.checkpoint=<a '
                     'PyTorch .pth/.pt/.bin/.safetensors file, a MindSpore .ckpt file, or the '
                     'workdir of a ghostnets_jax run>.')
  for field, path in paths.items():
    if not storage.path(path).exists():
      raise PathNotFoundError(f'config.init.{field}: not found: {path}')
  return next(iter(paths.items()), None)


def pretrained_variables(config: ml_collections.ConfigDict) -> Optional[tuple[dict, str]]:
  """``({'params', 'batch_stats'}, description)`` of the weights to start from, or None."""
  from ghostnets_jax.convert import load_checkpoint
  from ghostnets_jax.train.checkpoint import is_run_checkpoint
  found = _init_path(config)
  if found is None:
    return None
  field, path = found
  i = config.init
  if storage.path(path).is_dir() and field != 'torch_checkpoint':
    if not is_run_checkpoint(path):
      raise PathNotFoundError(f'config.init.{field}: {path} holds no ghostnets_jax checkpoint (a '
                              'run workdir, its checkpoints/ directory or a step directory).')
    kwargs: dict[str, Any] = {'step': i.step, 'use_ema': i.use_ema}
    what = f'run {path} ({i.step}{", EMA" if i.use_ema else ""})'
  else:   # a converted file: built with the config's module fields (e.g. smaller cfgs)
    kwargs, what = dict(config.model_kwargs.to_dict()), f'checkpoint {path}'
  logging.info('fine-tuning %s from %s', config.model, what)
  return load_checkpoint(config.model, path, **kwargs), what
