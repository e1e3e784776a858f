"""GhostNetV3 (re-parameterised training): ``configs/ghostnetv3.py:ghostnetv3_130`` (default 100).

Recipe: configs/README.md, column "GhostNetV3" (released ``train.py`` defaults): 300 epochs, global
batch 1024, Nesterov SGD momentum 0.9, lr 0.05 at 1024, cosine to 1e-5 after 3 warmup epochs from
1e-4, weight decay 2e-5 (not on 1-D params), label smoothing 0.1, no dropout, no EMA, colour jitter
0.4 (timm's ``--color-jitter`` default), no RandAugment / erasing / Mixup. Knowledge distillation
(KD weight 1 in the repo) from a teacher: set ``distill.teacher`` (a registry name) and its weights
(``distill.torch_checkpoint`` or ``distill.workdir``); the repo's BEiT-v2 teacher is not in the
registry, so it is off by default.
"""
from __future__ import annotations

from configs import default

MODELS = ('ghostnetv3_050', 'ghostnetv3_100', 'ghostnetv3_130', 'ghostnetv3_160')


def get_config(arg: str | None = None):
  variant = default.select(arg, MODELS, 'ghostnetv3_100')
  c = default.get_config()
  c.model = variant
  c.batch_size = 1024
  c.num_epochs = 300.0
  c.optim.name = 'sgd'
  c.optim.lr, c.optim.lr_ref_batch = 0.05, 1024
  c.optim.momentum = 0.9
  c.optim.nesterov = True
  c.optim.weight_decay = 2e-5
  c.schedule.name = 'cosine'
  c.schedule.warmup_epochs = 3.0
  c.schedule.warmup_init_lr = 1e-4
  c.schedule.end_lr = 1e-5
  c.label_smoothing = 0.1
  c.drop_rate = 0.0
  c.distill.alpha = 0.5
  c.distill.temperature = 1.0
  c.aug.interpolation = 'bicubic'
  c.aug.color_jitter = (0.4, 0.4, 0.4)
  if variant == 'demo':
    return default.demo(c, 'ghostnetv3_050')
  return c
