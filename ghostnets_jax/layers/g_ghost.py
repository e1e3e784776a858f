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

:class:`GhostXStage` is GhostNets_D's Ascend form of the stage, wired as the ``GhostModule`` of
Huawei's AutoML toolkit Vega (see its docstring): no channel slicing at all.

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


class _StageFields(nn.Module):
  """Fields and checks shared by the two stage forms (see :class:`GGhostStage`)."""
  features: int
  depth: int
  block: BlockSpec
  strides: int = 1
  cheap_ratio: float = 0.5
  deploy: bool = False
  dtype: Any = None
  dilation: int = 1
  dilate: bool = False

  def check_depth(self, what: str) -> None:
    if self.depth < 3:
      raise ValueError(f'{self.name}: a {what} stage needs depth >= 3 (base, middle, end), got '
                       f'{self.depth}; use a plain stage for shallower ones.')


class GGhostStage(_StageFields):
  """G-Ghost stage on NHWC input; children named as the official code's ``Stage``.

  Attributes:
    features: output channels of the stage (and of ``base``).
    depth: host blocks the plain stage would have (>= 3: base, middle blocks, end).
    block: the host block (:class:`BlockSpec`): ResNet bottleneck or RegNetX block.
    strides: stride of ``base``.
    cheap_ratio: share of the channels made by the cheap path (0.5 in the papers).
    cheap_op: 'conv1x1' (1x1 conv + BN, the official default), 'identity', 'dw3', 'dw5'.
    dilation, dilate: dilation of ``base``'s 3x3, and whether ``base`` trades its stride for
      dilation (dilated backbones); the layers after it then dilate by ``dilation * strides``.
  Children: ``base``, ``layers_{k}``, ``merge_0``, ``merge_1``, ``cheap``, ``end``.
  """
  cheap_op: str = 'conv1x1'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    self.check_depth('G-Ghost')
    if self.cheap_op not in CHEAP_OPS:
      raise ValueError(f'{self.name}: cheap_op must be one of {CHEAP_OPS}, got {self.cheap_op!r}.')
    kw = dict(deploy=self.deploy, dtype=self.dtype)
    raw, cheap = g_ghost_channels(self.features, self.cheap_ratio, self.block)
    x0 = self.block(self.features, self.strides, dilation=self.dilation, dilate=self.dilate,
                    name='base', **kw)(x, train)
    dilation = self.dilation * self.strides if self.dilate else self.dilation

    e = x0[..., :raw]
    mix = [x0]
    for k in range(self.depth - 2):
      e = middle_block(self.block)(raw, dilation=dilation, name=f'layers_{k}', **kw)(e, train)
      mix.append(e)  # restored: the seed's capture lost `m_list.append(e)`
    m = global_avg_pool(jnp.concatenate(mix, axis=-1), keepdims=True)
    m = ConvBN(cheap, 1, act='relu', name='merge_0', **kw)(m, train)
    m = ConvBN(cheap, 1, name='merge_1', **kw)(m, train)

    c = x0[..., raw:]
    if self.cheap_op == 'conv1x1':
      c = ConvBN(cheap, 1, name='cheap', **kw)(c, train)
    elif self.cheap_op in ('dw3', 'dw5'):
      c = ConvBN(cheap, int(self.cheap_op[2:]), groups=cheap, dilation=dilation, name='cheap',
                 **kw)(c, train)
    c = nn.relu(c + m)
    return self.block(self.features, dilation=dilation, name='end', **kw)(
        jnp.concatenate([e, c], axis=-1), train)


class GhostXStage(_StageFields):
  """GhostNets_D's GhostX stage, wired as the ``GhostModule`` of Huawei's AutoML toolkit Vega.

  Source: ``noah-vega`` 1.8.5 (PyPI), ``vega/modules/blocks/ghost.py``, class ``GhostModule``
  (Apache-2.0); the GhostNets_D paper's Ascend form (IJCV 2022, arXiv:2201.03297: on Davinci
  chips "slicing introduces a larger latency, so we apply 1x1 convolution to replace it").

  For a host bottleneck of expansion ``x`` (4 for ResNet), ``planes = features / x``,
  ``cheap = int(planes * cheap_ratio)`` and ``raw = planes - cheap``:

  * ``x0 = base(x)`` (the stride and, when the shape changes, a 1x1 conv + BN projection);
  * ``e = layers_0(x0)``: a bias-free 1x1 conv ``features -> x * raw`` (no BN) where the
    official GPU stage slices, then ``layers_1 .. layers_{depth-2}``: bottlenecks
    ``x * raw -> x * raw`` with identity shortcuts;
  * ``m = merge(avgpool(concat(x0, e_1, ..., e_{depth-2})))``, ``merge`` one 1x1 conv + BN
    (the 1x1 conv's output is not merged);
  * ``c = cheap(x0)``, a 1x1 conv + BN of the whole base output to ``x * cheap`` channels;
  * ``end(concat(e, relu(c + m)))``, ``end`` a bottleneck with identity shortcut.

  Slice-free: the graph holds no channel slicing at all, only convolutions and concatenations,
  the property GhostNets_D was designed for on Ascend. Vega declares the merge conv with
  ``x * raw * depth`` inputs, which equals the concatenation's width at ``cheap_ratio = 0.5``
  (the only ratio Vega builds); other ratios follow the concatenation.

  Attributes: as :class:`GGhostStage` (no ``cheap_op``: the cheap op is fixed).
  Children: ``base``, ``layers_0`` (Conv2d), ``layers_{k}`` (k >= 1), ``merge``, ``cheap``, ``end``.
  """

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    self.check_depth('GhostX')
    kw = dict(deploy=self.deploy, dtype=self.dtype)
    planes = self.block.width(self.features)
    cheap = int(planes * self.cheap_ratio)
    if not 0 < cheap < planes:
      raise ValueError(f'{self.name}: cheap_ratio={self.cheap_ratio} gives {cheap} of {planes} '
                       'cheap planes; choose a ratio that keeps both parts non-empty.')
    expansion = self.features // planes
    raw, cheap = (planes - cheap) * expansion, cheap * expansion
    x0 = self.block(self.features, self.strides, dilation=self.dilation, dilate=self.dilate,
                    name='base', **kw)(x, train)
    dilation = self.dilation * self.strides if self.dilate else self.dilation
    e = Conv2d(raw, 1, dtype=self.dtype, name='layers_0')(x0)
    mix = [x0]
    for k in range(1, self.depth - 1):
      e = self.block(raw, dilation=dilation, name=f'layers_{k}', **kw)(e, train)
      mix.append(e)
    m = ConvBN(cheap, 1, name='merge', **kw)(
        global_avg_pool(jnp.concatenate(mix, axis=-1), keepdims=True), train)
    c = nn.relu(ConvBN(cheap, 1, name='cheap', **kw)(x0, train) + m)
    return self.block(self.features, dilation=dilation, name='end', **kw)(
        jnp.concatenate([e, c], axis=-1), train)
