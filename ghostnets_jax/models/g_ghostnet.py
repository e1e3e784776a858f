"""G-GhostNet: G-Ghost (GhostX) stages on RegNetX and ResNet (GhostNets_D: ``ghostnet_d.py``).

Paper: GhostNets on Heterogeneous Devices via Cheap Operations (Han et al., IJCV 2022),
arXiv:2201.03297. Official code: https://github.com/huawei-noah/Efficient-AI-Backbones
(``g_ghost_pytorch/g_ghost_regnet.py``, whose parameter names :data:`G_GHOST_TORCH_RULES` map;
all twelve widths of its table are registered, ``g_ghost_regnetx_002`` ... ``g_ghost_regnetx_320``,
on the RegNetX hosts of ``models/regnet.py``, and the four with a released checkpoint carry its
README's top-1: :data:`G_GHOST_CHECKPOINTS`).

The stage itself is :class:`ghostnets_jax.layers.GGhostStage`; the networks are the
:class:`~ghostnets_jax.models.resnet.ResNet` trunk with some stages replaced (``ghost_stages``).
"""
from __future__ import annotations

from typing import Any

from ghostnets_jax.models.regnet import REGNETX_CFGS, regnetx
from ghostnets_jax.models.resnet import BOTTLENECK_TORCH_RULES, STEM_TORCH_RULES, ResNet
from ghostnets_jax.registry import TorchRules, register_model

G_GHOST_TORCH_RULES = TorchRules(rules=[
    *STEM_TORCH_RULES,
    (r'^(layer\d+)\.layers_(\d+)\.', r'\1.layers.\2.'),
    (r'\.merge_0\.conv\.', '.merge.1.'), (r'\.merge_0\.bn\.', '.merge.2.'),
    (r'\.merge_1\.conv\.', '.merge.4.'), (r'\.merge_1\.bn\.', '.merge.5.'),
    (r'\.cheap\.conv\.', '.cheap.0.'), (r'\.cheap\.bn\.', '.cheap.1.'),
    *BOTTLENECK_TORCH_RULES,
], head_key='fc.weight')


def g_ghost_regnetx(cfg: str, **kwargs: Any) -> ResNet:
  """G-Ghost RegNetX as the official code: stages 2-4 with more than two blocks become G-Ghost
  stages (cheap ratio 0.5, 1x1 conv + BN cheap op), stage 1 stays plain; dropout 0.2."""
  depths = kwargs.get('depths', REGNETX_CFGS[cfg][0])
  # restored: the `else:` (plain layer) branches of `if layers[k] > 2:` (missing from our copy)
  ghost_stages = tuple(i for i, d in enumerate(depths) if i > 0 and d > 2)
  return regnetx(cfg, **{'ghost_stages': ghost_stages, 'drop_rate': 0.2, **kwargs})


_PAPER = dict(paper='GhostNets on Heterogeneous Devices via Cheap Operations (IJCV 2022)',
              paper_url='https://arxiv.org/abs/2201.03297', interpolation='bilinear',
              torch_rules=G_GHOST_TORCH_RULES)

# The official README's released checkpoints (github.com/huawei-noah/Efficient-AI-Backbones,
# g_ghost_pytorch/readme.md): file, params, FLOPs, ImageNet top-1 at 224.
G_GHOST_CHECKPOINTS = {
    'g_ghost_regnetx_032': ('g_ghost_regnet_3.2g_77.8.pth', '10.5M', '1.8B', 77.8),
    'g_ghost_regnetx_040': ('g_ghost_regnet_4.0g_78.6.pth', '15.7M', '2.2B', 78.6),
    'g_ghost_regnetx_080': ('g_ghost_regnet_8.0g_79.0.pth', '24.6M', '4.2B', 79.0),
    'g_ghost_regnetx_160': ('g_ghost_regnet_16.0g_79.9.pth', '32.4M', '9.0B', 79.9),
}


def _register(host: str) -> None:
  name = f'g_ghost_{host}'

  def build(**kwargs: Any) -> ResNet:
    return g_ghost_regnetx(host, **kwargs)
  build.__name__ = build.__qualname__ = name
  build.__doc__ = f'G-Ghost {host} of the official code (the host is ``{host}``).'
  cfg = {}
  if name in G_GHOST_CHECKPOINTS:
    file, params, flops, top1 = G_GHOST_CHECKPOINTS[name]
    cfg = dict(top1=top1, top1_source=f'official G-GhostNet README ({file}: {params}, {flops})')
  globals()[name] = register_model('g_ghostnet', **cfg, **_PAPER)(build)


for _host in REGNETX_CFGS:  # the twelve widths of the official g_ghost_regnet.py
  _register(_host)


@register_model('g_ghostnet', **_PAPER)
def g_ghost_resnet50(**kwargs: Any) -> ResNet:
  """ResNet-50 with every stage a G-Ghost stage of the official (GPU) form, cheap ratio 0.5.

  No published checkpoint or accuracy for this exact layout was found (top-1 left unset).
  """
  return ResNet(**{'depths': (3, 4, 6, 3), 'ghost_stages': (0, 1, 2, 3), **kwargs})
