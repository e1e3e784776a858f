"""G-GhostNet: G-Ghost (GhostX) stages on RegNetX and ResNet (GhostNets_D: ``ghostnet_d.py``).

Paper: GhostNets on Heterogeneous Devices via Cheap Operations (Han et al., IJCV 2022),
arXiv:2201.03297. Official code: https://github.com/huawei-noah/Efficient-AI-Backbones
(``g_ghost_pytorch/g_ghost_regnet.py``, whose parameter names :data:`G_GHOST_TORCH_RULES` map).

The stage itself is :class:`ghostnets_jax.layers.GGhostStage`; the networks are the
:class:`~ghostnets_jax.models.resnet.ResNet` trunk with some stages replaced (``ghost_stages``).
"""
from __future__ import annotations

from typing import Any

from ghostnets_jax.convert.rules import TorchRules, register_torch_rules
from ghostnets_jax.models.regnet import REGNETX_CFGS, regnetx
from ghostnets_jax.models.resnet import BOTTLENECK_TORCH_RULES, STEM_TORCH_RULES, ResNet
from ghostnets_jax.registry import register_model

G_GHOST_TORCH_RULES = register_torch_rules('g_ghostnet', TorchRules(rules=[
    *STEM_TORCH_RULES,
    (r'^(layer\d+)\.layers_(\d+)\.', r'\1.layers.\2.'),
    (r'\.merge_0\.conv\.', '.merge.1.'), (r'\.merge_0\.bn\.', '.merge.2.'),
    (r'\.merge_1\.conv\.', '.merge.4.'), (r'\.merge_1\.bn\.', '.merge.5.'),
    (r'\.cheap\.conv\.', '.cheap.0.'), (r'\.cheap\.bn\.', '.cheap.1.'),
    *BOTTLENECK_TORCH_RULES,
], head_key='fc.weight'))


def g_ghost_regnetx(cfg: str, **kwargs: Any) -> ResNet:
  """G-Ghost RegNetX as the official code: stages 2-4 with more than two blocks become G-Ghost
  stages (cheap ratio 0.5, 1x1 conv + BN cheap op), stage 1 stays plain; dropout 0.2."""
  depths = kwargs.get('depths', REGNETX_CFGS[cfg][0])
  # restored: the seed's capture lost the `else:` (plain layer) branches of `if layers[k] > 2:`
  ghost_stages = tuple(i for i, d in enumerate(depths) if i > 0 and d > 2)
  return regnetx(cfg, **{'ghost_stages': ghost_stages, 'drop_rate': 0.2, **kwargs})


_PAPER = dict(paper='GhostNets on Heterogeneous Devices via Cheap Operations (IJCV 2022)',
              paper_url='https://arxiv.org/abs/2201.03297', interpolation='bilinear')


@register_model('g_ghostnet', top1=77.8,
                top1_source='official G-GhostNet README (g_ghost_regnet_3.2g_77.8.pth: 10.5M, 1.8B)',
                **_PAPER)
def g_ghost_regnetx_032(**kwargs: Any) -> ResNet:
  return g_ghost_regnetx('regnetx_032', **kwargs)


@register_model('g_ghostnet', **_PAPER)
def g_ghost_resnet50(**kwargs: Any) -> ResNet:
  """ResNet-50 with every stage a G-Ghost stage of the official (GPU) form, cheap ratio 0.5.

  No published checkpoint or accuracy for this exact layout was found (top-1 left unset).
  """
  return ResNet(**{'depths': (3, 4, 6, 3), 'ghost_stages': (0, 1, 2, 3), **kwargs})
