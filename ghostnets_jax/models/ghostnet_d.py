"""GhostNets_D: ResNet-101 whose stages are GhostX stages in their Ascend (slice-free) form.

Paper: GhostNets on Heterogeneous Devices via Cheap Operations (Han et al., IJCV 2022),
arXiv:2201.03297, which applies the GhostX stage to ResNets for Davinci (Ascend) chips and
replaces channel slicing with 1x1 convolutions. The stage is wired as the ``GhostModule`` of
Huawei's AutoML toolkit Vega (``noah-vega`` 1.8.5 on PyPI, ``vega/modules/blocks/ghost.py``),
:class:`ghostnets_jax.layers.GhostXStage`; the MindSpore README of GhostNets_D reports
top-1 0.7736 with 38,216.872K parameters, which ResNet-101 with four such stages (cheap ratio
0.5) reproduces exactly. The network is the :class:`~ghostnets_jax.models.resnet.ResNet` trunk
with ``ghost_form='vega'``.

Checkpoint names (:data:`GHOSTNET_D_TORCH_RULES`): torchvision's top level (``conv1``, ``bn1``,
``layer1``..``layer4``, ``fc``) with the ``GhostModule``'s own attributes inside a stage
(``base``, ``layers.0`` (the 1x1 conv), ``layers.K``, ``merge.1/2``, ``cheap.0/1``, ``end``) and
torchvision's bottleneck names inside the blocks.
"""
from __future__ import annotations

from typing import Any

from ghostnets_jax.models.resnet import BOTTLENECK_TORCH_RULES, STEM_TORCH_RULES, ResNet
from ghostnets_jax.registry import MindSporeRules, TorchRules, register_model

GHOSTNET_D_TORCH_RULES = TorchRules(rules=[
    *STEM_TORCH_RULES,
    (r'^(layer\d+)\.layers_(\d+)\.', r'\1.layers.\2.'),
    (r'\.merge\.conv\.', '.merge.1.'), (r'\.merge\.bn\.', '.merge.2.'),
    (r'\.cheap\.conv\.', '.cheap.0.'), (r'\.cheap\.bn\.', '.cheap.1.'),
    *BOTTLENECK_TORCH_RULES,
], head_key='fc.weight')
# MindSpore: the GhostNets_D model file is not public; its GhostModule's cell names are (Vega's
# ``GhostModule`` attributes), so a MindSpore checkpoint holds these names with MindSpore's BN
# leaves (``gamma``/``beta``/``moving_mean``/``moving_variance``) under torchvision's top level.
GHOSTNET_D_MINDSPORE_RULES = MindSporeRules('ghostmodule', GHOSTNET_D_TORCH_RULES,
                                            'Vega 1.8.5 GhostModule cell names')


@register_model('ghostnet_d', top1=77.36, top1_source=(
    'GhostNets_D MindSpore README (accuracy_top1 0.7736, 38,216.872K params)'),
                paper='GhostNets on Heterogeneous Devices via Cheap Operations (IJCV 2022)',
                paper_url='https://arxiv.org/abs/2201.03297', interpolation='bilinear',
                torch_rules=GHOSTNET_D_TORCH_RULES, mindspore_rules=(GHOSTNET_D_MINDSPORE_RULES,))
def ghostnet_d_101(**kwargs: Any) -> ResNet:
  """GhostNets_D: ResNet-101 (7x7 stem, depths 3-4-23-3, planes 64-512) with every stage a
  GhostX stage wired as Vega's ``GhostModule`` (cheap ratio 0.5): 38,216,872 parameters.

  Slice-free: no channel slicing anywhere in the graph (1x1 convolutions and concatenations
  only), the Ascend property GhostNets_D was designed for.
  """
  return ResNet(**{'depths': (3, 4, 23, 3), 'ghost_stages': (0, 1, 2, 3), 'ghost_form': 'vega',
                   **kwargs})
