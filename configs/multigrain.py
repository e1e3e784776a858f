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

Second order: ``--config=configs/multigrain.py:psgd_kron`` (or ``:demo,psgd_kron``) trains with
PSGD-Kron (``psgd-jax``) instead of SGD, on THOR's learning-rate shape from the MindSpore
ResNet-50 THOR recipe, ``lr * (1 - epoch / 70) ** 4.9687`` after the 2 warmup epochs. THOR's
damping (0.02345 * 0.5467 ** (epoch / 10)) and its 834-step inverse interval belong to K-FAC's
explicit inverses and have no PSGD counterpart (PSGD fits its preconditioner online; it is
refitted every step for 500 steps, then with a probability annealed to 0.03). Why PSGD-Kron and
not K-FAC: README, "S-GhostNet and MultiGrain".
"""
from __future__ import annotations

from configs import default

MODELS = ('multigrain_resnet50',)
DEMO_BACKBONE = (('depths', (1, 1, 1, 1)), ('widths', (64, 128, 256, 512)), ('stem_width', 32))


def second_order(c, demo: bool = False):
  """PSGD-Kron on THOR's polynomial lr shape (see the module docstring). The lr and decay suit
  PSGD's unit-scale preconditioned updates (chosen on the demo, not tuned on ImageNet): the
  decoupled decay 1e-2 x lr 1e-3 shrinks weights per step as SGD's coupled 1e-4 x lr 0.1 does.
  The demo's 312 steps refit the preconditioner every step for 50 steps only, then less and
  less often (probability 0.03 from step ~225), which cuts its per-step cost."""
  c.optim.name = 'psgd_kron'
  c.optim.lr = 1e-3
  if demo:
    c.optim.precond_flat_steps, c.optim.precond_decay = 50, 0.02
  c.optim.b1 = 0.9
  c.optim.weight_decay = 1e-2
  c.schedule.name = 'polynomial'
  c.schedule.power = 4.9687
  c.schedule.end_epoch = (c.num_epochs - c.schedule.warmup_epochs) * 70 / 45
  return c


def get_config(arg: str | None = None):
  parts = (arg or '').split(',')
  if set(parts[1:]) - {'psgd_kron'}:
    raise ValueError(f'unknown config option(s) {parts[1:]}; the only one is psgd_kron, '
                     'e.g. configs/multigrain.py:demo,psgd_kron')
  if parts[0] == 'psgd_kron':
    parts = ['', 'psgd_kron']
  variant = default.select(parts[0] or None, MODELS, 'multigrain_resnet50')
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
  # copy detection's queries: a crop of 25-100 % of the image, flip, RandAugment m9
  c.eval.evaluator_kwargs.retrieval = dict(copy_augment=dict(
      scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, auto_augment='rand-m9-mstd0.5'))
  if variant == 'demo':
    c = default.demo(c, 'multigrain_resnet50')
    c.model_kwargs.backbone_kwargs = DEMO_BACKBONE   # a 1-1-1-1 ResNet trunk for the CPU
    c.batch_size = 96         # 32 images x 3 repeats
    c.optim.lr, c.optim.lr_ref_batch = 0.1, 96
    c.optim.nesterov = False
    c.drop_rate = None
    c.num_epochs = 3.0
  return second_order(c, variant == 'demo') if 'psgd_kron' in parts[1:] else c
