"""S-GhostNet (Greedy Network Enlarging): ``configs/s_ghostnet.py:s_ghostnet_b4`` (default b1).

Recipe: the seed 003 training command (MindSpore): SGD momentum (``--opt=momentum``), lr_max 0.6
with 20 warmup epochs from 1e-6 and cosine to 1e-6, 450 epochs, weight decay 2e-5, dropout 0.3,
drop-path 0.1, EMA (the seed's ``--ema-decay=0.97`` is per MindSpore callback; we use a per-step
0.9999), AutoAugment (issue 8), synced BN, 8 devices x batch 32 = 256 global. Input 240 (b1) /
384 (b4) come from the registry.
"""
from __future__ import annotations

from configs import default

MODELS = ('s_ghostnet_b1', 's_ghostnet_b4')


def get_config(arg: str | None = None):
  variant = default.select(arg, MODELS, 's_ghostnet_b1')
  c = default.get_config()
  c.model = variant
  c.batch_size = 256
  c.num_epochs = 450.0
  c.optim.name = 'sgd'
  c.optim.lr, c.optim.lr_ref_batch = 0.6, 256
  c.optim.momentum = 0.9
  c.optim.weight_decay = 2e-5
  c.schedule.name = 'cosine'
  c.schedule.warmup_epochs = 20.0
  c.schedule.warmup_init_lr = 1e-6
  c.schedule.end_lr = 1e-6
  c.drop_rate = 0.3
  c.drop_path_rate = 0.1
  c.ema.decay = 0.9999
  c.sharding.bn_group_size = 0    # --sync_bn: statistics over the global batch
  c.aug.interpolation = 'bicubic'
  if variant == 'demo':
    return default.demo(c, default.registered_or('s_ghostnet_b1'))
  return c

