"""RegNetX: the ResNet trunk with a 3x3 stem, no max pool and grouped expansion-1 blocks.

Paper: Designing Network Design Spaces (Radosavovic et al., CVPR 2020), arXiv:2003.13678.
Widths: the twelve RegNetX models of pycls (facebookresearch/pycls ``MODEL_ZOO.md``), named by
their FLOPs in units of 100 M as in the official G-GhostNet code (``regnetx_002`` = RegNetX-200MF
... ``regnetx_320`` = RegNetX-32GF), whose ``g_ghost_regnet.py`` lists the same depths, widths and
group widths (bottleneck ratio 1). Reference: torchvision's ``RegNet`` (``stem``,
``trunk_output.blockN.blockN-K.f.a/b/c``, ``proj``, ``fc``): its ``regnet_x_*`` models for six
widths; ``regnet_x_400mf`` is not pycls's RegNetX-400MF (its last stage is 400 wide, not 384:
5.50 M against 5.16 M parameters), so ``regnetx_004`` is compared with torchvision's ``RegNet``
class built from the table. The G-Ghost variants of these networks are in ``models/g_ghostnet.py``.
"""
from __future__ import annotations

from typing import Any

from ghostnets_jax.layers import BlockSpec
from ghostnets_jax.models.resnet import ResNet
from ghostnets_jax.registry import TorchRules, register_model

# (depths, widths, group width) of the RegNetX models (pycls; the official G-GhostNet code).
REGNETX_CFGS = {
    'regnetx_002': ((1, 1, 4, 7), (24, 56, 152, 368), 8),
    'regnetx_004': ((1, 2, 7, 12), (32, 64, 160, 384), 16),
    'regnetx_006': ((1, 3, 5, 7), (48, 96, 240, 528), 24),
    'regnetx_008': ((1, 3, 7, 5), (64, 128, 288, 672), 16),
    'regnetx_016': ((2, 4, 10, 2), (72, 168, 408, 912), 24),
    'regnetx_032': ((2, 6, 15, 2), (96, 192, 432, 1008), 48),
    'regnetx_040': ((2, 5, 14, 2), (80, 240, 560, 1360), 40),
    'regnetx_064': ((2, 4, 10, 1), (168, 392, 784, 1624), 56),
    'regnetx_080': ((2, 5, 15, 1), (80, 240, 720, 1920), 120),
    'regnetx_120': ((2, 5, 11, 1), (224, 448, 896, 2240), 112),
    'regnetx_160': ((2, 6, 13, 1), (256, 512, 896, 2048), 128),
    'regnetx_320': ((2, 7, 13, 1), (336, 672, 1344, 2520), 168),
}

# Published ImageNet-1k top-1 (%) of the plain networks: torchvision's IMAGENET1K_V1 weights where
# torchvision builds the same network (its model name given), else pycls MODEL_ZOO.md (100 - error).
REGNETX_TORCHVISION = {
    'regnetx_008': ('regnet_x_800mf', 75.212), 'regnetx_016': ('regnet_x_1_6gf', 77.04),
    'regnetx_032': ('regnet_x_3_2gf', 78.364), 'regnetx_080': ('regnet_x_8gf', 79.344),
    'regnetx_160': ('regnet_x_16gf', 80.058), 'regnetx_320': ('regnet_x_32gf', 80.622),
}
REGNETX_PYCLS_TOP1 = {'regnetx_002': 68.9, 'regnetx_004': 72.7, 'regnetx_006': 74.1,
                      'regnetx_040': 78.6, 'regnetx_064': 79.2, 'regnetx_120': 79.7}


def regnetx(cfg: str, **kwargs: Any) -> ResNet:
  """The RegNetX network ``cfg`` (a key of :data:`REGNETX_CFGS`); kwargs set ResNet fields."""
  depths, widths, group_width = REGNETX_CFGS[cfg]
  arch = dict(depths=depths, widths=widths, block=BlockSpec(1, group_width), strides=(2, 2, 2, 2),
              stem_width=32, stem_kernel=3, stem_pool=False)
  return ResNet(**{**arch, **kwargs})


REGNET_TORCH_RULES = TorchRules(rules=[
    (r'^stem\.conv\.', 'stem.0.'), (r'^stem\.bn\.', 'stem.1.'),
    (r'^layer(\d+)_(\d+)\.', r'trunk_output.block\1.block\1-\2.'),
    (r'\.conv(\d)\.(conv|bn)\.',
     lambda m: f'.f.{"abc"[int(m.group(1)) - 1]}.{int(m.group(2) == "bn")}.'),
    (r'\.downsample\.conv\.', '.proj.0.'), (r'\.downsample\.bn\.', '.proj.1.'),
], head_key='fc.weight')


_PAPER = dict(interpolation='bilinear', paper='Designing Network Design Spaces (CVPR 2020)',
              paper_url='https://arxiv.org/abs/2003.13678', torch_rules=REGNET_TORCH_RULES)


def _register(name: str) -> None:
  def build(**kwargs: Any) -> ResNet:
    return regnetx(name, **kwargs)
  build.__name__ = build.__qualname__ = name
  build.__doc__ = f'RegNetX {name[-3:]} (x100 MFLOPs): depths, widths, group width {REGNETX_CFGS[name]}.'
  if name in REGNETX_TORCHVISION:
    tv, top1 = REGNETX_TORCHVISION[name]
    cfg = dict(top1=top1, top1_source='torchvision docs, IMAGENET1K_V1 weights',
               reference=f'torchvision:{tv}')
  else:
    cfg = dict(top1=REGNETX_PYCLS_TOP1[name], top1_source='pycls MODEL_ZOO.md (100 - top-1 error)')
  globals()[name] = register_model('regnet', **cfg, **_PAPER)(build)


for _name in REGNETX_CFGS:
  _register(_name)
