"""ResNet (torchvision v1.5 layout), the trunk shared by RegNetX, G-GhostNet and MultiGrain.

Papers:
  * Deep Residual Learning for Image Recognition (He et al., CVPR 2016), arXiv:1512.03385
  * Designing Network Design Spaces (Radosavovic et al., CVPR 2020), arXiv:2003.13678 (RegNetX:
    this network with a 3x3 stem and grouped blocks, see ``models/regnet.py``)
Reference: torchvision ``resnet50`` / ``resnet101`` (same parameter names after conversion).

:class:`ResNet` is stem -> four stages of :class:`~ghostnets_jax.layers.Bottleneck` -> head. Any
stage may instead be a G-Ghost stage (``ghost_stages``, see ``models/g_ghostnet.py``) or a
GhostX stage of GhostNets_D (``ghost_form='vega'``, see ``models/ghostnet_d.py``). The head
is ``forward_head`` (global average pool -> dropout -> ``fc``); ``num_classes=0`` returns pooled
features, ``global_pool=''`` the last feature map (a trunk for MultiGrain's GeM). As a
:class:`~ghostnets_jax.models.backbone.Backbone`, ``method='features'`` gives the stem conv
(level 2) and the ends of the four stages (4, 8, 16, 32; RegNetX: no max pool, its first stage
strides).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ghostnets_jax.layers import (RESNET_BLOCK, BlockSpec, ConvBN, GGhostStage, GhostXStage,
                                  check_images, global_avg_pool, max_pool_3x3_s2)
from ghostnets_jax.models.backbone import Backbone
from ghostnets_jax.registry import TorchRules, register_model

GHOST_FORMS = ('official', 'vega')


class ResNet(Backbone):
  """ResNet-style classifier on NHWC images.

  Attributes:
    depths, widths: blocks and output channels per stage.
    block: the residual block (:data:`RESNET_BLOCK`: expansion 4; RegNetX: expansion 1, grouped).
    strides: stride of each stage's first block.
    stem_width, stem_kernel, stem_pool: stem conv (+BN+ReLU) and whether a 3x3/2 max pool follows.
    ghost_stages: indices of the stages built as G-Ghost stages, with ``cheap_ratio`` (and
      ``cheap_op``) passed to them. ghost_form: 'official' (:class:`GGhostStage`, the official
      G-GhostNet code) or 'vega' (:class:`GhostXStage`, GhostNets_D as Huawei's Vega wires it).
    drop_rate: dropout before ``fc``. num_classes: 0 returns the pooled features.
    global_pool: 'avg', or '' to return the final NHWC feature map (no pooling, no head), as
      trunks with their own pooling need (MultiGrain's GeM).
    deploy: BN folded into the convolutions. dtype: computation dtype (params stay float32).
  Variables: ``stem``, ``layer{i}_{k}`` (plain stage ``i``, block ``k``) or ``layer{i}`` (G-Ghost), ``fc``.
  """
  depths: Sequence[int] = (3, 4, 6, 3)
  widths: Sequence[int] = (256, 512, 1024, 2048)
  block: BlockSpec = RESNET_BLOCK
  strides: Sequence[int] = (1, 2, 2, 2)
  stem_width: int = 64
  stem_kernel: int = 7
  stem_pool: bool = True
  ghost_stages: Sequence[int] = ()
  cheap_ratio: float = 0.5
  cheap_op: str = 'conv1x1'
  ghost_form: str = 'official'
  num_classes: int = 1000
  in_chans: int = 3
  drop_rate: float = 0.0
  global_pool: str = 'avg'
  deploy: bool = False
  dtype: Any = None

  def forward_head(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Global average pool -> dropout -> ``fc`` (float32 logits); the feature map if no pooling."""
    if not self.global_pool:
      return x
    x = global_avg_pool(x)
    if self.num_classes <= 0:
      return x
    x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
    return nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x).astype(jnp.float32)

  @nn.compact
  def forward(self, x: jax.Array, train: bool = False, features_only: bool = False) -> Any:
    """Stem and stages, then ``forward_head`` (or the ``{stride: map}`` features)."""
    check_images(x, self.in_chans, type(self).__name__)
    if self.global_pool not in ('avg', ''):
      raise ValueError(f"global_pool must be 'avg' or '' (no pooling), got {self.global_pool!r}.")
    if self.ghost_form not in GHOST_FORMS:
      raise ValueError(f'ghost_form must be one of {GHOST_FORMS}, got {self.ghost_form!r}.')
    if len({len(self.depths), len(self.widths), len(self.strides)}) != 1:
      raise ValueError(f'depths {tuple(self.depths)}, widths {tuple(self.widths)} and strides '
                       f'{tuple(self.strides)} must have one entry per stage.')
    plan = self.stride_plan()
    kw = dict(deploy=self.deploy, dtype=self.dtype)
    if self.dtype is not None:
      x = x.astype(self.dtype)
    plan.downsample(2)  # stem and max pool never dilate (output_stride >= 8)
    x = plan.record(ConvBN(self.stem_width, self.stem_kernel, 2, act='relu', name='stem', **kw)(
        x, train))
    if self.stem_pool:
      plan.downsample(2)
      x = plan.record(max_pool_3x3_s2(x))
    for i, (depth, width, stride) in enumerate(zip(self.depths, self.widths, self.strides)):
      if i in self.ghost_stages:
        dilation, dilate = plan.downsample(stride)
        if self.ghost_form == 'vega':
          stage = GhostXStage(width, depth, self.block, stride, self.cheap_ratio, **kw,
                              dilation=dilation, dilate=dilate, name=f'layer{i + 1}')
        else:
          stage = GGhostStage(width, depth, self.block, stride, self.cheap_ratio, **kw,
                              cheap_op=self.cheap_op, dilation=dilation, dilate=dilate,
                              name=f'layer{i + 1}')
        x = stage(x, train)
      else:
        for k in range(depth):
          s = stride if k == 0 else 1
          dilation, dilate = plan.downsample(s)
          x = self.block(width, s, dilation=dilation, dilate=dilate, name=f'layer{i + 1}_{k}',
                         **kw)(x, train)
      plan.record(x)
    if features_only:
      return plan.features()
    return self.forward_head(x, train)


# torchvision Bottleneck names; the official G-Ghost code uses the same for its blocks.
BOTTLENECK_TORCH_RULES = [
    (r'\.conv(\d)\.conv\.', r'.conv\1.'), (r'\.conv(\d)\.bn\.', r'.bn\1.'),
    (r'\.downsample\.conv\.', '.downsample.0.'), (r'\.downsample\.bn\.', '.downsample.1.'),
]
STEM_TORCH_RULES = [(r'^stem\.conv\.', 'conv1.'), (r'^stem\.bn\.', 'bn1.'),
                    (r'^layer(\d+)_(\d+)\.', r'layer\1.\2.')]

RESNET_TORCH_RULES = TorchRules(rules=STEM_TORCH_RULES + BOTTLENECK_TORCH_RULES, head_key='fc.weight')


_RESNET = dict(paper='Deep Residual Learning for Image Recognition (CVPR 2016)',
               paper_url='https://arxiv.org/abs/1512.03385', interpolation='bilinear',
               torch_rules=RESNET_TORCH_RULES)
_TV = 'torchvision docs, IMAGENET1K_V1 weights'


@register_model('resnet', top1=76.13, top1_source=_TV, reference='torchvision:resnet50', **_RESNET)
def resnet50(**kwargs: Any) -> ResNet:
  return ResNet(**{'depths': (3, 4, 6, 3), **kwargs})


@register_model('resnet', top1=77.374, top1_source=_TV, reference='torchvision:resnet101', **_RESNET)
def resnet101(**kwargs: Any) -> ResNet:
  return ResNet(**{'depths': (3, 4, 23, 3), **kwargs})
