"""MultiGrain (ResNet-50 + GeM, classification + retrieval): ``configs/multigrain.py``.

Recipe: the MultiGrain paper (arXiv:1902.05509) with the seed 004's values where it gives them:
SGD momentum 0.9 (the seed's THOR is MindSpore-only), weight decay 1e-4, label smoothing 0.1,
lr 0.2 for a global batch of 512, 120 epochs with x0.1 steps at 30/60/90, repeated augmentation
m=3 (``data.sampler='repeated'``, issue 6/8) and the joint loss (``loss='multigrain'``, issue 6),
retrieval evaluation (``eval.evaluators=('retrieval',)``, issue 6). Those three plug-ins are
off until they are registered.
"""
from __future__ import annotations

from configs import default

MODELS = ('multigrain_resnet50',)


def get_config(arg: str | None = None):
  variant = default.select(arg, MODELS, 'multigrain_resnet50')
  c = default.get_config()
  c.model = variant
  c.batch_size = 512
  c.num_epochs = 120.0
  c.optim.name = 'sgd'
  c.optim.lr, c.optim.lr_ref_batch = 0.2, 512
  c.optim.momentum = 0.9
  c.optim.weight_decay = 1e-4
  c.schedule.name = 'step'
  c.schedule.milestones = (30, 60, 90)
  c.schedule.decay_rate = 0.1
  c.label_smoothing = 0.1
  if variant == 'demo':
    c = default.demo(c, default.registered_or('multigrain_resnet50'))
    c.num_epochs = 2.0   # a ResNet-50-sized model: keep the CPU demo short
    return c
  return c

