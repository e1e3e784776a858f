"""GhostNet v1 (C-GhostNet) on ImageNet: ``configs/ghostnet.py:ghostnet_130`` (default 100).

Recipe (GhostNet paper, arXiv:1911.11907, Sec. 4.2): SGD momentum 0.9, lr 0.4 for a global
batch of 1024, weight decay 4e-5, cosine schedule, dropout 0.2 before the classifier. The epoch
count is not stated there; 300 as in the GhostNetV2 comparison (to confirm, issue 8).
"""
from __future__ import annotations

from configs import default

MODELS = ('ghostnet_050', 'ghostnet_100', 'ghostnet_130')


def get_config(arg: str | None = None):
  variant = default.select(arg, MODELS, 'ghostnet_100')
  c = default.get_config()
  c.model = variant
  c.batch_size = 1024
  c.num_epochs = 300.0
  c.optim.name = 'sgd'
  c.optim.lr, c.optim.lr_ref_batch = 0.4, 1024
  c.optim.momentum = 0.9
  c.optim.weight_decay = 4e-5
  c.schedule.name = 'cosine'
  c.drop_rate = 0.2
  c.label_smoothing = 0.1
  if variant == 'demo':
    return default.demo(c, 'ghostnet_050')
  return c
