"""GhostNets_D (ResNet-101 with GhostX stages, Ascend): ``configs/ghostnet_d.py``.

Recipe: configs/README.md, column "GhostNets_D" (seed 000, ``src/ghostnet_d.yml``): 120 epochs,
batch 128, SGD momentum 0.9, lr 0.001 (as written in the yml; flagged there), cosine (T_max 120
epochs), no warmup, weight decay 1e-4 on every parameter, plain cross-entropy, Mixup on (alpha
not stated: 0.2, the Mixup paper's ImageNet value).
"""
from __future__ import annotations

from configs import default

MODELS = ('ghostnet_d_101', 'resnet101')


def get_config(arg: str | None = None):
  variant = default.select(arg, MODELS, 'ghostnet_d_101')
  c = default.get_config()
  c.model = variant
  c.batch_size = 128
  c.num_epochs = 120.0
  c.optim.name = 'sgd'
  c.optim.lr, c.optim.lr_ref_batch = 0.001, 128
  c.optim.momentum = 0.9
  c.optim.weight_decay = 1e-4
  c.optim.wd_exclude_1d = False   # MindSpore's SGD decays every parameter
  c.schedule.name = 'cosine'
  c.label_smoothing = 0.0
  c.aug.mixup_alpha = 0.2
  if variant == 'demo':
    c = default.demo(c, 'ghostnet_d_101')
    c.num_epochs = 2.0   # a ResNet-101-sized model: keep the CPU demo short
  return c
