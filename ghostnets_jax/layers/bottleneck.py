"""The residual bottleneck shared by ResNet (expansion 4) and RegNetX (expansion 1, grouped 3x3).

``relu(conv3(relu(conv2(relu(conv1(x))))) + shortcut(x))`` with every conv followed by BN;
the stride sits on the 3x3 (ResNet v1.5 / torchvision, RegNet). :class:`BlockSpec` says how a
host network sizes and groups its blocks, so that plain stages and G-Ghost stages build the same
block.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax

from ghostnets_jax.layers.conv_bn import ConvBN

SHORTCUTS = (None, 'conv_bn')


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (strides, groups, dilation) -> 1x1, plus shortcut, then ReLU.

  Attributes:
    features: output channels.
    width: channels of the 3x3 conv.
    groups: groups of the 3x3 conv.
    shortcut: None for identity when the shape is kept and 1x1 conv + BN otherwise (torchvision's
      ``downsample`` / RegNet's ``proj``); 'conv_bn' forces that projection.
    dilation: of the 3x3 conv. dilate: the block trades its stride for dilation (dilated
      backbones, ``output_stride < 32``): every conv runs with stride 1, the structure (the
      projection shortcut) stays that of ``strides``.
  Children: ``conv1``, ``conv2``, ``conv3`` (ConvBN), ``downsample``.
  """
  features: int
  width: int
  strides: int = 1
  groups: int = 1
  dilation: int = 1
  shortcut: Optional[str] = None
  deploy: bool = False
  dtype: Any = None
  dilate: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.shortcut not in SHORTCUTS:
      raise ValueError(f'{self.name}: shortcut must be one of {SHORTCUTS}, got {self.shortcut!r}.')
    kw = dict(deploy=self.deploy, dtype=self.dtype)
    strides = 1 if self.dilate else self.strides
    y = ConvBN(self.width, 1, act='relu', name='conv1', **kw)(x, train)
    y = ConvBN(self.width, 3, strides, self.groups, self.dilation, act='relu', name='conv2',
               **kw)(y, train)
    y = ConvBN(self.features, 1, name='conv3', **kw)(y, train)
    shortcut = self.shortcut
    if shortcut is None and (self.strides != 1 or x.shape[-1] != self.features):
      shortcut = 'conv_bn'
    if shortcut == 'conv_bn':
      x = ConvBN(self.features, 1, strides, name='downsample', **kw)(x, train)
    return nn.relu(y + x)


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """How a host network builds its bottleneck for ``features`` output channels.

  Attributes:
    expansion: output / 3x3 width (ResNet 4, RegNetX 1).
    group_width: channels per group of the 3x3 conv (RegNetX); 0 for one group (ResNet).
  """
  expansion: int = 1
  group_width: int = 0

  def width(self, features: int) -> int:
    return features // self.expansion

  def groups(self, width: int) -> int:
    """``width // min(width, group_width)``, as the official RegNet code (and torchvision)."""
    return width // min(width, self.group_width) if self.group_width else 1

  @property
  def channel_multiple(self) -> int:
    """Output channels must be a multiple of this for whole widths and groups."""
    return self.expansion * max(self.group_width, 1)

  def with_group_width(self, group_width: int) -> BlockSpec:
    return dataclasses.replace(self, group_width=group_width)

  def __call__(self, features: int, strides: int = 1, shortcut: Optional[str] = None,
               dilation: int = 1, **kwargs: Any) -> Bottleneck:
    width = self.width(features)
    return Bottleneck(features, width, strides, self.groups(width), dilation, shortcut, **kwargs)


RESNET_BLOCK = BlockSpec(expansion=4)
