"""G-GhostNet (G-Ghost stages on RegNetX) and its RegNetX hosts: ``configs/g_ghost_regnet.py``.

Variants: the four widths with a released checkpoint (official README: 3.2G, 4.0G, 8.0G, 16.0G),
``:032`` ``:040`` ``:080`` ``:160`` (= ``:g_ghost_regnetx_040`` ...), and their plain hosts
``:regnetx_032`` ... ``:regnetx_160``; default ``g_ghost_regnetx_032``. One recipe for all of them.

Recipe: configs/README.md, column "G-GhostNet" (the official readme follows the PyTorch ImageNet
example): 90 epochs, global batch 256, SGD momentum 0.9 (not Nesterov), lr 0.1 at 256, x0.1 every
30 epochs, no warmup, weight decay 1e-4 on every parameter, no label smoothing, dropout 0.2 (the
model's default), Inception crop and flip. The lr is stated for batch 256 and the trainer scales
it linearly when ``--config.batch_size`` changes (lr x batch / 256: 0.4 at 1024).

``demo`` is the README's main command: the same family at demo scale on the embedded
Fashion-MNIST subset (32 px), trained in a few CPU minutes: ``g_ghost_regnetx_032``'s layout
(RegNetX stem, grouped bottlenecks, G-Ghost stages 2-4 with cheap 1x1 conv features) with fewer
blocks and channels (``DEMO_MODEL_KWARGS``), cosine schedule over 3 epochs.
"""
from __future__ import annotations

from configs import default

WIDTHS = ('032', '040', '080', '160')  # the official README's released checkpoints
MODELS = tuple(f'g_ghost_regnetx_{w}' for w in WIDTHS) + tuple(f'regnetx_{w}' for w in WIDTHS)
# The demo's G-Ghost RegNetX (~1M params): stages of 1-1-3-1 blocks (group width 48 as RegNetX-3.2GF),
# the 3-block stage a G-Ghost stage.
DEMO_MODEL_KWARGS = dict(depths=(1, 1, 3, 1), widths=(48, 96, 192, 384), stem_width=16,
                         ghost_stages=(2,))


def get_config(arg: str | None = None):
  variant = default.select(f'g_ghost_regnetx_{arg}' if arg in WIDTHS else arg, MODELS,
                           'g_ghost_regnetx_032')
  c = default.get_config()
  c.model = variant
  c.batch_size = 256
  c.num_epochs = 90.0
  c.optim.name = 'sgd'
  c.optim.lr, c.optim.lr_ref_batch = 0.1, 256
  c.optim.momentum = 0.9
  c.optim.nesterov = False
  c.optim.weight_decay = 1e-4
  c.optim.wd_exclude_1d = False   # torch.optim.SGD(weight_decay=...) decays every parameter
  c.schedule.name = 'step'
  c.schedule.milestones = (30, 60)
  c.schedule.decay_rate = 0.1
  c.label_smoothing = 0.0
  if variant == 'demo':
    c = default.demo(c, 'g_ghost_regnetx_032')
    c.model_kwargs.update(DEMO_MODEL_KWARGS)
    c.drop_rate = 0.0
    c.num_epochs = 3.0
  return c
