"""GhostNet v1 (C-GhostNet) on ImageNet: ``configs/ghostnet.py:ghostnet_130`` (default 100).

Recipe: configs/README.md, column "GhostNet v1" (repo ``ghostnet_tensorflow``, paper): 400 epochs,
global batch 1024, Nesterov SGD momentum 0.9, lr 0.4 at 1024, cosine with a 5-epoch linear warmup
from 0.1 x peak, weight decay 4e-5 on conv/FC weights only, label smoothing 0.1, dropout 0.2,
Inception crop (area 0.49-1 for widths < 1) and flip. The release's colour jitter (brightness /
contrast / saturation 0.4, in random order) runs on the release's own TensorFlow ops, whose
arithmetic is not that of timm's PIL-based ``aug.color_jitter``; it is left out.
"""
from __future__ import annotations

from configs import default

MODELS = ('ghostnet_050', 'ghostnet_100', 'ghostnet_130')


def get_config(arg: str | None = None):
  variant = default.select(arg, MODELS, 'ghostnet_100')
  c = default.get_config()
  c.model = variant
  c.batch_size = 1024
  c.num_epochs = 400.0
  c.optim.name = 'sgd'
  c.optim.lr, c.optim.lr_ref_batch = 0.4, 1024
  c.optim.momentum = 0.9
  c.optim.nesterov = True
  c.optim.weight_decay = 4e-5
  c.schedule.name = 'cosine'
  c.schedule.warmup_epochs = 5.0
  c.schedule.warmup_init_lr = 0.04
  c.drop_rate = 0.2
  c.label_smoothing = 0.1
  if variant == 'ghostnet_050':
    c.aug.crop_scale = (0.49, 1.0)
  if variant == 'demo':
    return default.demo(c, 'ghostnet_050')
  return c
