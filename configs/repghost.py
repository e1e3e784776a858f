"""RepGhostNet on ImageNet: ``configs/repghost.py:repghostnet_150`` (default 100).

Recipe: the RepGhost README (seed 002): 8 GPUs x 128 = global batch 1024, SGD lr 0.6, cosine,
300 epochs, 5 warmup epochs from lr 1e-4, weight decay 1e-5, dropout 0.2, AMP, EMA 0.9999,
random erasing 0.2 in pixel mode (``--remode pixel --reprob 0.2``; the op comes from
ghostnets_jax.data.augment, issue 8), timm's default label smoothing 0.1.
"""
from __future__ import annotations

from configs import default

MODELS = ('repghostnet_050', 'repghostnet_058', 'repghostnet_080', 'repghostnet_100',
          'repghostnet_111', 'repghostnet_130', 'repghostnet_150', 'repghostnet_200')


def get_config(arg: str | None = None):
  variant = default.select(arg, MODELS, 'repghostnet_100')
  c = default.get_config()
  c.model = variant
  c.batch_size = 1024
  c.num_epochs = 300.0
  c.optim.name = 'sgd'
  c.optim.lr, c.optim.lr_ref_batch = 0.6, 1024
  c.optim.momentum = 0.9
  c.optim.weight_decay = 1e-5
  c.schedule.name = 'cosine'
  c.schedule.warmup_epochs = 5.0
  c.schedule.warmup_init_lr = 1e-4
  c.drop_rate = 0.2
  c.ema.decay = 0.9999
  c.label_smoothing = 0.1
  c.dtype = 'bfloat16'   # the seed trains with --amp
  if variant == 'demo':
    c = default.demo(c, default.registered_or('repghostnet_050'))
    c.dtype = 'float32'
  return c
