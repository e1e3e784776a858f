"""RegNetX: the ResNet trunk with a 3x3 stem, no max pool and grouped expansion-1 blocks.

Paper: Designing Network Design Spaces (Radosavovic et al., CVPR 2020), arXiv:2003.13678.
Reference: torchvision ``regnet_x_3_2gf`` (``stem``, ``trunk_output.blockN.blockN-K.f.a/b/c``,
``proj``, ``fc``); the G-Ghost variants of these networks are in ``models/g_ghostnet.py``.
"""
from __future__ import annotations

from typing import Any

from ghostnets_jax.convert.rules import TorchRules, register_torch_rules
from ghostnets_jax.layers import BlockSpec
from ghostnets_jax.models.resnet import ResNet
from ghostnets_jax.registry import register_model

# (depths, widths, group width) of the RegNetX models (pycls / torchvision).
REGNETX_CFGS = {
    'regnetx_032': ((2, 6, 15, 2), (96, 192, 432, 1008), 48),
}


def regnetx(cfg: str, **kwargs: Any) -> ResNet:
  """The RegNetX network ``cfg`` (a key of :data:`REGNETX_CFGS`); kwargs set ResNet fields."""
  depths, widths, group_width = REGNETX_CFGS[cfg]
  arch = dict(depths=depths, widths=widths, block=BlockSpec(1, group_width), strides=(2, 2, 2, 2),
              stem_width=32, stem_kernel=3, stem_pool=False)
  return ResNet(**{**arch, **kwargs})


REGNET_TORCH_RULES = register_torch_rules('regnet', TorchRules(rules=[
    (r'^stem\.conv\.', 'stem.0.'), (r'^stem\.bn\.', 'stem.1.'),
    (r'^layer(\d+)_(\d+)\.', r'trunk_output.block\1.block\1-\2.'),
    (r'\.conv(\d)\.(conv|bn)\.',
     lambda m: f'.f.{"abc"[int(m.group(1)) - 1]}.{int(m.group(2) == "bn")}.'),
    (r'\.downsample\.conv\.', '.proj.0.'), (r'\.downsample\.bn\.', '.proj.1.'),
], head_key='fc.weight'))


@register_model('regnet', top1=78.364, top1_source='torchvision docs, IMAGENET1K_V1 weights',
                reference='torchvision:regnet_x_3_2gf', interpolation='bilinear',
                paper='Designing Network Design Spaces (CVPR 2020)',
                paper_url='https://arxiv.org/abs/2003.13678')
def regnetx_032(**kwargs: Any) -> ResNet:
  return regnetx('regnetx_032', **kwargs)
