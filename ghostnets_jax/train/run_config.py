"""What a run derives from its config and data: :class:`RunConfig`, built by :func:`resolve`.

Everything computed from the config after command-line overrides (scaled learning rate, image
sizes, eval crop, preprocessing strings, step counts, mesh, the step's static settings) is
resolved once, here, into a frozen dataclass; the trainer writes it to
``workdir/resolved_config.json`` next to ``config.json``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import jax
import ml_collections

from ghostnets_jax.errors import ConfigError
from ghostnets_jax.registry import get_spec
from ghostnets_jax.train import finetune, optim
from ghostnets_jax.train import mesh as mesh_lib
from ghostnets_jax.train import step as step_lib


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """The resolved run. Train-only fields (``steps_per_epoch`` ... ``eval_every``) are None when
  the run only evaluates."""
  model: str
  family: str
  num_classes: int
  image_size: int
  eval_image_size: int
  eval_crop_pct: float
  eval_interpolation: str
  mean: tuple[float, float, float]
  std: tuple[float, float, float]
  eval_batch_size: int
  lr: float
  devices: int
  processes: int
  mesh: dict[str, int]
  bn_groups: int
  train_preprocess: str
  eval_preprocess: str
  step_config: step_lib.StepConfig
  steps_per_epoch: Optional[int] = None
  total_steps: Optional[int] = None
  checkpoint_every: Optional[int] = None
  eval_every: Optional[int] = None

  def to_json_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def ema_decay(c: ml_collections.ConfigDict, steps_per_epoch: int) -> float:
  """The per-step EMA decay (``ema.per_epoch``: ``decay`` is stated per epoch)."""
  d = c.ema.decay
  return d ** (1.0 / steps_per_epoch) if c.ema.per_epoch and d > 0 else d


def step_config(c: ml_collections.ConfigDict, num_classes: int, bn_groups: int = 1,
                steps_per_epoch: int = 1) -> step_lib.StepConfig:
  """The train step's static settings (loss, label smoothing, batch transform, EMA, ...)."""
  a = c.aug
  transform, kwargs = a.batch_transform, a.batch_transform_kwargs.to_dict()
  if a.mixup_alpha > 0 or a.cutmix_alpha > 0:
    if transform:
      raise ConfigError(f'aug.mixup_alpha/cutmix_alpha and aug.batch_transform={transform!r} are '
                        'both set; the step applies one batch transform: clear one of them.')
    transform, kwargs = 'mixup', dict(mixup_alpha=a.mixup_alpha, cutmix_alpha=a.cutmix_alpha,
                                      prob=a.mixup_prob, switch_prob=a.mixup_switch_prob,
                                      mode=a.mixup_mode)
  return step_lib.StepConfig(
      num_classes=num_classes, label_smoothing=c.label_smoothing, loss=c.loss,
      bn_groups=bn_groups, grad_accum_steps=c.optim.grad_accum_steps,
      ema_decay=ema_decay(c, steps_per_epoch),
      batch_transform=transform, batch_transform_kwargs=tuple(sorted(kwargs.items())),
      distill_alpha=c.distill.alpha if c.distill.teacher else 0.0,
      distill_temperature=c.distill.temperature, seed=c.seed,
      loss_kwargs=tuple(sorted(c.loss_kwargs.to_dict().items())), freeze_bn=finetune.freeze_bn(c),
      remat=c.get('remat', 'none'))


def _check_rgb(field: str, v: tuple, registry_value: tuple) -> None:
  if len(v) != 3 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
    raise ConfigError(f'config.aug.{field} must be 3 numbers (per RGB channel, images scaled to '
                      f'0-1), got {v!r}; e.g. --config.aug.{field}="{tuple(registry_value)}".')


def _train_steps(c: ml_collections.ConfigDict, num_train: int) -> dict[str, int]:
  # an epoch is len_factor x the split's samples (RASampler's meaning; 1 for other samplers)
  spe = int(num_train * c.data.sampler_kwargs.get('len_factor', 1.0)) // c.batch_size
  if spe == 0:
    raise ConfigError(f'the training split has {num_train} examples, fewer than one batch of '
                      f'{c.batch_size}; lower --config.batch_size.')
  return dict(
      steps_per_epoch=spe,
      total_steps=c.num_train_steps if c.num_train_steps > 0 else int(round(c.num_epochs * spe)),
      checkpoint_every=c.checkpoint.every_steps if c.checkpoint.every_steps > 0 else spe,
      eval_every=c.eval.every_steps if c.eval.every_steps > 0 else spe)


def resolve(c: ml_collections.ConfigDict, num_classes: int, num_train: Optional[int],
            mesh) -> RunConfig:
  """Every value derived from the config (after overrides), the data and the mesh.

  ``None`` fields of the config take the model's registry entry (image size, eval crop and
  interpolation, mean/std); ``num_train=None`` (evaluation only) leaves the step counts None.
  """
  from ghostnets_jax.data import preprocess   # TensorFlow: only where data is resolved
  spec = get_spec(c.model)
  a = c.aug
  image_size = c.image_size or spec.input_size
  eval_size = c.eval.image_size or image_size
  mean, std = tuple(a.mean or spec.mean), tuple(a.std or spec.std)
  _check_rgb('mean', mean, spec.mean)
  _check_rgb('std', std, spec.std)
  n_dev = mesh.devices.size
  mesh_lib.check_batch_size(c.batch_size, n_dev, c.optim.grad_accum_steps, jax.process_count())
  eval_bs = int(math.ceil((c.eval.batch_size or c.batch_size) / n_dev) * n_dev)
  crop_pct = a.eval_crop_pct or spec.crop_pct
  interpolation = a.eval_interpolation or spec.interpolation
  steps = _train_steps(c, num_train) if num_train is not None else {}
  bn_groups = mesh_lib.bn_num_groups(mesh, c.sharding.bn_group_size)
  sc = step_config(c, num_classes, bn_groups, steps.get('steps_per_epoch', 1))
  if c.distill.teacher and sc.batch_transform:
    raise ConfigError('distillation with a batch transform (mixup/cutmix) is not supported yet: '
                      'the teacher would see the transformed images; disable one of them.')
  return RunConfig(
      model=c.model, family=spec.family, num_classes=num_classes,
      image_size=image_size, eval_image_size=eval_size, eval_crop_pct=crop_pct,
      eval_interpolation=interpolation, mean=mean, std=std, eval_batch_size=eval_bs,
      lr=optim.scaled_lr(c), devices=n_dev, processes=jax.process_count(),
      mesh=dict(mesh.shape), bn_groups=bn_groups,
      train_preprocess=preprocess.train_spec(
          image_size, scale=a.crop_scale, ratio=a.crop_ratio, interpolation=a.interpolation,
          hflip=a.hflip, mean=mean, std=std, auto_augment=a.auto_augment,
          color_jitter=a.color_jitter, reprob=a.reprob, remode=a.remode, recount=a.recount,
          ops=a.ops, post_ops=a.post_ops),
      eval_preprocess=preprocess.eval_spec(eval_size, crop_pct=crop_pct,
                                           interpolation=interpolation, mean=mean, std=std),
      step_config=sc, **steps)
