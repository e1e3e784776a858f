"""GhostNets_D (ResNet-101 with GhostX stages, Ascend): ``configs/ghostnet_d.py``.

Recipe: configs/README.md, column "GhostNets_D". From the GhostNets_D README's
``src/ghostnet_d.yml`` (a Vega pipeline, ``backend: mindspore``): 120 epochs, batch 128, SGD
momentum 0.9, lr 0.001 (as written), ``CosineAnnealingLR`` T_max 120 with ``by_epoch: True``
(the lr is held within each epoch), no warmup, weight decay 1e-4, plain cross-entropy, Mixup on.
From Huawei Vega 1.8.5 (``noah-vega`` on PyPI), which runs that yml: Mixup is MindSpore's
``MixUpBatch(2)`` (alpha 2.0, one lambda per batch; ``vega/datasets/mindspore/adapter.py``); the
ImageNet training transforms are Inception crop 224, flip and ``ColorJitter(0.4, 0.4, 0.4,
hue=0.2)`` (``vega/datasets/conf/imagenet.py``); the SGD gets every trainable parameter, so
MindSpore's default filter decays all but BN gamma/beta (``vega/trainer/modules/optimizer/
optim.py``).
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
  c.optim.wd_exclude_1d, c.optim.wd_exclude_norm = False, True   # MindSpore SGD's default filter
  c.schedule.name = 'cosine'
  c.schedule.per_epoch = True     # by_epoch: True
  c.label_smoothing = 0.0
  c.aug.mixup_alpha = 2.0         # MixUpBatch(2)
  c.aug.color_jitter = (0.4, 0.4, 0.4, 0.2)
  if variant == 'demo':
    c = default.demo(c, 'ghostnet_d_101')
    c.num_epochs = 2.0   # a ResNet-101-sized model: keep the CPU demo short
  return c
