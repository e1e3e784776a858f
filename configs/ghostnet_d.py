"""GhostNets_D (GhostX stage on ResNet-101) and its baseline: ``configs/ghostnet_d.py``.

Recipe: the seed 000 (``src/ghostnet_d.yml``, MindSpore / Ascend): SGD lr 0.001, momentum 0.9,
weight decay 1e-4, CosineAnnealingLR T_max 120, 120 epochs, plain cross-entropy, mixup, batch 128
(per the yml's dataset section; the device count is not given, so lr is stated for 128). Mixup
plugs in as ``aug.batch_transform='mixup'`` once ghostnets_jax.data.mixup lands (issue 8).
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
  if variant == 'demo':
    c = default.demo(c, default.registered_or('ghostnet_d_101'))
    c.num_epochs = 2.0   # a ResNet-101-sized model: keep the CPU demo short
    return c
  return c
