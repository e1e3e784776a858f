"""MultiGrain (ResNet-50 + GeM, classification + retrieval): ``configs/multigrain.py``.

Recipe: configs/README.md, column "MultiGrain" (MindSpore MultiGrain README; THOR replaced by SGD
momentum 0.9 as in the paper): 45 epochs, global batch 240 (a multiple of the 3 repeats), lr 0.1 per
256 (the ResNet-50 SGD convention: THOR's lr values do not transfer), cosine after 2 warmup epochs,
weight decay 1e-4, repeated augmentation m = 3 (``data.sampler='repeated'``, the image ids become
the instances of the margin loss) with the official ``RASampler``'s epoch (``len_factor`` 1: N
samples, N / 3 images x 3, 5,338 steps at 240), the joint loss ``lam * CE(smoothing 0.1) + (1 - lam)
* margin`` with lam 0.5, margin 0.2 and a learnable beta (initial 1.2; ``loss='multigrain'``), GeM p
= 3, and the retrieval evaluation (class retrieval and copy detection, ``eval.evaluators``) after
the classification eval; ``--mode=eval`` runs both from a checkpoint.
"""
from __future__ import annotations

from configs import default

MODELS = ('multigrain_resnet50',)
DEMO_BACKBONE = (('depths', (1, 1, 1, 1)), ('widths', (64, 128, 256, 512)), ('stem_width', 32))


def get_config(arg: str | None = None):
  variant = default.select(arg, MODELS, 'multigrain_resnet50')
  c = default.get_config()
  c.model = variant
  c.batch_size = 240
  c.num_epochs = 45.0
  c.optim.name = 'sgd'
  c.optim.lr, c.optim.lr_ref_batch = 0.1, 256
  c.optim.momentum = 0.9
  c.optim.nesterov = False
  c.optim.weight_decay = 1e-4
  c.schedule.name = 'cosine'
  c.schedule.warmup_epochs = 2.0
  c.label_smoothing = 0.1
  c.loss = 'multigrain'
  c.loss_kwargs.lam = 0.5
  c.loss_kwargs.margin = 0.2
  c.loss_kwargs.label_smoothing = 0.1
  c.data.sampler = 'repeated'
  c.data.sampler_kwargs.repeats = 3
  c.data.sampler_kwargs.len_factor = 1.0   # RASampler's epoch: N samples, N / 3 images x 3
  c.eval.evaluators = ('retrieval',)
  if variant == 'demo':
    c = default.demo(c, 'multigrain_resnet50')
    c.model_kwargs.backbone_kwargs = DEMO_BACKBONE   # a 1-1-1-1 ResNet trunk for the CPU
    c.batch_size = 96         # 32 images x 3 repeats
    c.optim.lr, c.optim.lr_ref_batch = 0.1, 96
    c.optim.nesterov = False
    c.drop_rate = None
    c.num_epochs = 3.0
  return c
