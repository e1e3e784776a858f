"""RepGhostNet (re-parameterised Ghost modules): ``configs/repghost.py:repghostnet_150``.

Recipe: configs/README.md, column "RepGhostNet" (RepGhost README + repo ``train.sh``): 300 epochs,
global batch 1024, Nesterov SGD momentum 0.9, lr 0.6 at 1024, cosine to 1e-5 after 5 warmup epochs
from 1e-4, weight decay 1e-5 (not on 1-D params), label smoothing 0.1, dropout 0.2, EMA 0.9999,
random erasing 0.2 (pixel), colour jitter 0.4 (timm 0.6.7's ``--color-jitter`` default, which timm
turns off under ``--aa``: so the 0.5x-1.11x widths), RandAugment ``rand-m9-mstd0.5`` for the 1.3x /
1.5x / 2.0x widths only, AMP (bfloat16 compute here).
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
  c.optim.nesterov = True
  c.optim.weight_decay = 1e-5
  c.schedule.name = 'cosine'
  c.schedule.warmup_epochs = 5.0
  c.schedule.warmup_init_lr = 1e-4
  c.schedule.end_lr = 1e-5
  c.drop_rate = 0.2
  c.ema.decay = 0.9999
  c.label_smoothing = 0.1
  c.aug.reprob, c.aug.remode = 0.2, 'pixel'
  c.aug.color_jitter = (0.4, 0.4, 0.4)   # timm train.py default; off under an --aa string
  if variant in ('repghostnet_130', 'repghostnet_150', 'repghostnet_200'):
    c.aug.auto_augment = 'rand-m9-mstd0.5'
  c.dtype = 'bfloat16'   # the README trains with --amp
  if variant == 'demo':
    c = default.demo(c, 'repghostnet_050')
    c.dtype = 'float32'
  return c
