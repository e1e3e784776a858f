"""The G-Ghost (GhostX) stage of G-GhostNet (Han et al., IJCV 2022, arXiv:2201.03297).

A stage of ``depth`` host blocks whose output is split by ``cheap_ratio``:

* ``base`` (the stage's first block, with the stride) gives ``x0`` (``features`` channels);
* the intrinsic path: ``e = x0[..., :raw]`` through the ``depth - 2`` middle blocks
  (``raw -> raw``, the official code groups their 3x3 by ``int(0.75 * group_width)``);
* the cheap path: ``c = cheap_op(x0[..., raw:])`` (1x1 conv + BN by default; identity, 3x3 or
  5x5 depthwise + BN as options);
* the mix: ``m = merge(avgpool(concat(x0, e_1, ..., e_{depth-2})))`` with ``merge`` =
  1x1 conv + BN + ReLU + 1x1 conv + BN to the cheap width, broadcast over space;
* ``end(concat(e, relu(c + m)))``, ``end`` being an ordinary host block.

``slice_free=True`` is the GhostNets_D form for Ascend (slicing is slow on Davinci chips): the
cheap features are a bias-free 1x1 conv without BN of the whole ``x0`` (``cheap_split``), which
then gets the cheap op (identity in GhostNets_D), and the first middle block's shortcut is a
bias-free 1x1 conv ``raw -> raw`` without BN in place of the official code's slicing
``LambdaLayer`` (a no-op there, its input having ``raw`` channels already).

The seed's capture of the official ``g_ghost_regnet.py`` lost ``m_list.append(e)`` inside the
middle-block loop; we append every middle block's output to the mix, which is what the merge
conv's input width ``planes + raw_planes * (blocks - 2)`` requires (marked "restored" below;
the file in the official repository has the line). Its ``self.inplanes`` in the base block's
shortcut test is the ``inplanes`` argument (``Bottleneck``'s own shape test does that here).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ghostnets_jax.layers.bottleneck import BlockSpec
from ghostnets_jax.layers.conv import Conv2d
from ghostnets_jax.layers.conv_bn import ConvBN
from ghostnets_jax.layers.pool import global_avg_pool

CHEAP_OPS = ('conv1x1', 'identity', 'dw3', 'dw5')
# The official code groups the middle blocks' 3x3 by int(0.75 * group_width).
MIDDLE_GROUP_WIDTH_SCALE = 0.75


def g_ghost_channels(features: int, cheap_ratio: float, block: BlockSpec) -> tuple[int, int]:
  """``(raw, cheap)`` channels: ``raw = int(features * (1 - ratio) / m) * m``, ``m`` the
  middle blocks' channel multiple (their group width for RegNetX, the expansion for ResNet)."""
  m = middle_block(block).channel_multiple
  raw = int(features * (1 - cheap_ratio) / m) * m
  if not 0 < raw < features:
    raise ValueError(f'cheap_ratio={cheap_ratio} leaves {raw} of {features} channels intrinsic '
                     f'(a multiple of {m}); choose a ratio that keeps both parts non-empty.')
  return raw, features - raw


def middle_block(block: BlockSpec) -> BlockSpec:
  return block.with_group_width(int(block.group_width * MIDDLE_GROUP_WIDTH_SCALE))


class GGhostStage(nn.Module):
  """G-Ghost stage on NHWC input; children named as the official code's ``Stage``.

  Attributes:
    features: output channels of the stage (and of ``base``).
    depth: host blocks the plain stage would have (>= 3: base, middle blocks, end).
    block: the host block (:class:`BlockSpec`): ResNet bottleneck or RegNetX block.
    strides: stride of ``base``.
    cheap_ratio: share of the channels made by the cheap path (0.5 in the papers).
    cheap_op: 'conv1x1' (1x1 conv + BN, the official default), 'identity', 'dw3', 'dw5'.
    slice_free: GhostNets_D's 1x1 convolutions instead of channel slicing (see module doc).
  Children: ``base``, ``layers_{k}``, ``merge_0``, ``merge_1``, ``cheap``, [``cheap_split``], ``end``.
  """
  features: int
  depth: int
  block: BlockSpec
  strides: int = 1
  cheap_ratio: float = 0.5
  cheap_op: str = 'conv1x1'
  slice_free: bool = False
  deploy: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.depth < 3:
      raise ValueError(f'{self.name}: a G-Ghost stage needs depth >= 3 (base, middle, end), got '
                       f'{self.depth}; use a plain stage for shallower ones.')
    if self.cheap_op not in CHEAP_OPS:
      raise ValueError(f'{self.name}: cheap_op must be one of {CHEAP_OPS}, got {self.cheap_op!r}.')
    kw = dict(deploy=self.deploy, dtype=self.dtype)
    raw, cheap = g_ghost_channels(self.features, self.cheap_ratio, self.block)
    x0 = self.block(self.features, self.strides, name='base', **kw)(x, train)

    e = x0[..., :raw]
    mix = [x0]
    for k in range(self.depth - 2):
      shortcut = 'conv' if self.slice_free and k == 0 else None
      e = middle_block(self.block)(raw, shortcut=shortcut, name=f'layers_{k}', **kw)(e, train)
      mix.append(e)  # restored: the seed's capture lost `m_list.append(e)`
    m = global_avg_pool(jnp.concatenate(mix, axis=-1), keepdims=True)
    m = ConvBN(cheap, 1, act='relu', name='merge_0', **kw)(m, train)
    m = ConvBN(cheap, 1, name='merge_1', **kw)(m, train)

    if self.slice_free:
      c = Conv2d(cheap, 1, dtype=self.dtype, name='cheap_split')(x0)
    else:
      c = x0[..., raw:]
    if self.cheap_op == 'conv1x1':
      c = ConvBN(cheap, 1, name='cheap', **kw)(c, train)
    elif self.cheap_op in ('dw3', 'dw5'):
      c = ConvBN(cheap, int(self.cheap_op[2:]), groups=cheap, name='cheap', **kw)(c, train)
    c = nn.relu(c + m)
    return self.block(self.features, name='end', **kw)(jnp.concatenate([e, c], axis=-1), train)
