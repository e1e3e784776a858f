"""S-GhostNet (Greedy Network Enlarging): ``configs/s_ghostnet.py:s_ghostnet_b4`` (default b1).

Recipe: configs/README.md, column "S-GhostNet" (MindSpore model zoo ``research/cv/S-GhostNet``: the
README's ModelArts command for b4; b1 reuses it at 240): 450 epochs, 32 cards x 32 = global batch
1024, Momentum 0.9 (not Nesterov), peak lr 0.6 at 1024 with 20 warmup epochs from 1e-4
(``--lr=0.0001``: the zoo's ``train.py`` warms up from ``--lr`` under ``--lr_decay_style=cosine``;
``--warmup-lr`` only feeds ``cosine_step``) and cosine to 1e-6, weight decay 2e-5 on all but BN
scale/bias (MindSpore ``Momentum``'s default filter), label smoothing 0.1 (``train.py``'s
``--smoothing`` default), dropout 0.3, drop-path 0.1, AutoAugment with the AutoAugment paper's
ImageNet policy (timm's ``original``: the zoo's ``src/dataset.py`` ``imagenet_policy``), synced BN
over the global batch, fp32, input 240 (b1) / 384 (b4) from the registry. EMA: the README's
``--ema-decay=0.97`` (the released ``train.py`` parses it but applies no EMA) read as per epoch
(0.97 per step would average ~33 steps), i.e. ``0.97 ** (1 / steps_per_epoch)`` per step
(``ema.per_epoch``).
"""
from __future__ import annotations

from configs import default

MODELS = ('s_ghostnet_b1', 's_ghostnet_b4')


def get_config(arg: str | None = None):
  variant = default.select(arg, MODELS, 's_ghostnet_b1')
  c = default.get_config()
  c.model = variant
  c.batch_size = 1024
  c.num_epochs = 450.0
  c.optim.name = 'sgd'
  c.optim.lr, c.optim.lr_ref_batch = 0.6, 1024
  c.optim.momentum = 0.9
  c.optim.nesterov = False
  c.optim.weight_decay = 2e-5
  c.optim.wd_exclude_1d, c.optim.wd_exclude_norm = False, True   # Momentum(trainable_params())
  c.schedule.name = 'cosine'
  c.schedule.warmup_epochs = 20.0
  c.schedule.warmup_init_lr = 1e-4   # --lr=0.0001 (get_lr's lr_init)
  c.schedule.end_lr = 1e-6
  c.label_smoothing = 0.1
  c.drop_rate = 0.3
  c.drop_path_rate = 0.1
  c.ema.decay, c.ema.per_epoch = 0.97, True
  c.sharding.bn_group_size = 0    # --sync_bn: statistics over the global batch
  c.aug.auto_augment = 'original'
  c.aug.interpolation = 'bicubic'
  if variant == 'demo':
    c = default.demo(c, 's_ghostnet_b1')
    c.ema.decay, c.ema.per_epoch = 0.0, False
  return c
