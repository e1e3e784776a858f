"""GhostNetV2 (DFC attention) on ImageNet: ``configs/ghostnetv2.py:ghostnetv2_160`` (default 100).

Recipe: configs/README.md, column "GhostNetV2" (repo README train command + timm 0.3.2
defaults): 450 epochs, global batch 1024, RMSprop-TF (decay 0.9, momentum 0.9, eps 1e-3), lr 0.064
at 1024, x0.973 every 2.4 epochs after 3 warmup epochs from 1e-6, weight decay 1e-5 (not on 1-D
params), label smoothing 0.1, dropout 0.2, EMA 0.9999, RandAugment ``rand-m9-mstd0.5`` and random
erasing 0.2 (pixel). timm's 10 cooldown epochs and lr noise are not reproduced.
"""
from __future__ import annotations

from configs import default

MODELS = ('ghostnetv2_100', 'ghostnetv2_130', 'ghostnetv2_160')


def get_config(arg: str | None = None):
  variant = default.select(arg, MODELS, 'ghostnetv2_100')
  c = default.get_config()
  c.model = variant
  c.batch_size = 1024
  c.num_epochs = 450.0
  c.optim.name = 'rmsprop_tf'
  c.optim.lr, c.optim.lr_ref_batch = 0.064, 1024
  c.optim.momentum = 0.9
  c.optim.rms_decay = 0.9
  c.optim.eps = 1e-3
  c.optim.weight_decay = 1e-5
  c.schedule.name = 'exponential'
  c.schedule.decay_epochs = 2.4
  c.schedule.decay_rate = 0.973
  c.schedule.warmup_epochs = 3.0
  c.schedule.warmup_init_lr = 1e-6
  c.label_smoothing = 0.1
  c.drop_rate = 0.2
  c.ema.decay = 0.9999
  c.aug.interpolation = 'bicubic'
  c.aug.auto_augment = 'rand-m9-mstd0.5'
  c.aug.reprob, c.aug.remode = 0.2, 'pixel'
  if variant == 'demo':
    return default.demo(c, 'ghostnetv2_100')
  return c
