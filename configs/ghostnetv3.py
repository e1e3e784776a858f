"""GhostNetV3 on ImageNet: ``configs/ghostnetv3.py:ghostnetv3_130`` (default 100).

Recipe (GhostNetV3 paper, arXiv:2404.11202, "training strategies for compact models"):
re-parameterised training, knowledge distillation from a large teacher, no mixup/CutMix, EMA,
cosine schedule, long training. The paper's teacher is not in our registry: set
``--config.distill.teacher=<registry name> --config.distill.torch_checkpoint=<file>`` (or
``distill.workdir``) to enable it. Optimiser numbers below follow the paper's table of training
settings as we read it (to confirm line by line, issue 8).
"""
from __future__ import annotations

from configs import default

MODELS = ('ghostnetv3_050', 'ghostnetv3_100', 'ghostnetv3_130', 'ghostnetv3_160')


def get_config(arg: str | None = None):
  variant = default.select(arg, MODELS, 'ghostnetv3_100')
  c = default.get_config()
  c.model = variant
  c.batch_size = 1024
  c.num_epochs = 600.0
  c.optim.name = 'lamb'
  c.optim.lr, c.optim.lr_ref_batch = 5e-3, 1024
  c.optim.weight_decay = 0.05
  c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.999, 1e-6
  c.schedule.name = 'cosine'
  c.schedule.warmup_epochs = 5.0
  c.schedule.warmup_init_lr = 1e-6
  c.ema.decay = 0.9999
  c.drop_rate = 0.2
  c.distill.alpha = 0.5
  c.distill.temperature = 1.0
  c.aug.interpolation = 'bicubic'
  if variant == 'demo':
    return default.demo(c, default.registered_or('ghostnetv3_050'))
  return c

