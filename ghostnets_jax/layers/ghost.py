"""The C-Ghost module (GhostNet, CVPR 2020), its DFC-attention variant (GhostNetV2), its
re-parameterizable-branch form (GhostNetV3) and the RepGhost module.

C-Ghost: a primary conv makes ``ceil(out / ratio)`` intrinsic maps, a cheap depthwise conv
makes the rest from them, and the two are concatenated (then cut to ``out`` channels).
RepGhost replaces the concatenation by an addition that re-parameterization removes.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from ghostnets_jax.layers.conv import Parts, join
from ghostnets_jax.layers.conv_bn import ConvBN
from ghostnets_jax.layers.lowering import exporting
from ghostnets_jax.layers.pool import avg_pool_2x2, nearest_resize
from ghostnets_jax.layers.rep_conv import RepConvBN


class GhostModule(nn.Module):
  """C-Ghost module: ``concat(primary(x), cheap(primary(x)))[..., :features]``.

  Attributes:
    features: output channels.
    kernel_size, strides: of the primary conv.
    ratio: total / intrinsic channels (``s`` in the paper).
    dw_size: kernel of the cheap depthwise op.
    act: activation after both convs (None for the linear second module of a bottleneck).
    num_conv_branches: 0 for plain ConvBN convs; N > 0 makes both convs re-parameterizable
      (GhostNetV3, :class:`RepConvBN`): N parallel ConvBN branches each, plus a 1x1 scale
      branch where the kernel is larger and an identity BN for the cheap op when it keeps the
      channel count. As in timm, the primary conv has no identity branch (the official code
      adds one when in == intrinsic channels, which no published configuration has).
    dilation: of both convs (and of the DFC attention's in :class:`GhostModuleV2`).
  """
  features: int
  kernel_size: int = 1
  ratio: int = 2
  dw_size: int = 3
  strides: int = 1
  act: Optional[str] = 'relu'
  num_conv_branches: int = 0
  deploy: bool = False
  dtype: Any = None
  dilation: int = 1

  @property
  def init_channels(self) -> int:
    return math.ceil(self.features / self.ratio)

  def ghost(self, x: jax.Array, train: bool) -> tuple[jax.Array, ...]:
    """The intrinsic and ghost maps, cut to ``features`` channels together."""
    init, new = self.init_channels, self.init_channels * (self.ratio - 1)
    kw = dict(act=self.act, deploy=self.deploy, dtype=self.dtype, dilation=self.dilation)
    if self.num_conv_branches:
      n = self.num_conv_branches
      primary = RepConvBN(init, self.kernel_size, self.strides, num_conv_branches=n,
                          use_scale=self.kernel_size > 1, name='primary_conv', **kw)
      cheap = RepConvBN(new, self.dw_size, groups=init, num_conv_branches=n,
                        use_scale=self.dw_size > 1, use_identity=new == init,
                        name='cheap_operation', **kw)
    else:
      primary = ConvBN(init, self.kernel_size, self.strides, name='primary_conv', **kw)
      cheap = ConvBN(new, self.dw_size, groups=init, name='cheap_operation', **kw)
    x1 = primary(x, train)
    if init >= self.features:
      return (x1[..., :self.features],)
    return x1, cheap(x1, train)[..., :self.features - init]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, split: bool = False) -> Parts:
    """The output; with ``split`` as channel parts (intrinsic, ghost) that :class:`Conv2d` takes."""
    parts = self.ghost(x, train)
    return parts if split else join(parts)


class DFCAttention(nn.Module):
  """Decoupled fully connected attention of GhostNetV2 (sigmoid gate, at half resolution).

  ``sigmoid(dw(5x1)(dw(1x5)(conv(avgpool2x2(x)))))``, upsampled (nearest) to ``size``.
  ``dilation`` (in a dilated backbone) dilates the convs, so that they span the same image
  extent as in the strided network.
  """
  features: int
  kernel_size: int = 1
  strides: int = 1
  deploy: bool = False
  dtype: Any = None
  dilation: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, size: tuple[int, int], train: bool = False) -> jax.Array:
    c = self.features
    kw = dict(deploy=self.deploy, dtype=self.dtype, dilation=self.dilation)
    r = avg_pool_2x2(x)
    r = ConvBN(c, self.kernel_size, self.strides, name='short_conv_0', **kw)(r, train)
    r = ConvBN(c, (1, 5), groups=c, name='short_conv_1', **kw)(r, train)
    r = ConvBN(c, (5, 1), groups=c, name='short_conv_2', **kw)(r, train)
    return nearest_resize(jax.nn.sigmoid(r), size)


class GhostModuleV2(GhostModule):
  """GhostNetV2 module: the C-Ghost output gated by DFC attention computed from the input."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, split: bool = False) -> Parts:
    parts = self.ghost(x, train)
    gate = DFCAttention(self.features, self.kernel_size, self.strides, self.deploy, self.dtype,
                        self.dilation, name='short_conv')(x, parts[0].shape[1:3], train)
    gate = gate.astype(parts[0].dtype)
    if not split or exporting():  # exported: one Mul, no slices of the gate (a conv takes arrays)
      return join(parts) * gate
    c = parts[0].shape[-1]
    return parts[0] * gate[..., :c], *(p * gate[..., c:] for p in parts[1:])


class RepGhostModule(nn.Module):
  """RepGhost module (Chen et al. 2022): ``act(dw(primary(x)) + bn(primary(x)))``.

  The primary ConvBN (with ReLU when ``act``) makes all ``features`` channels; the cheap
  depthwise ConvBN and an identity BatchNorm on the same maps are added (feature reuse by
  addition), a :class:`RepConvBN` that re-parameterization turns into one depthwise conv.
  """
  features: int
  kernel_size: int = 1
  dw_size: int = 3
  strides: int = 1
  act: Optional[str] = 'relu'
  deploy: bool = False
  dtype: Any = None
  dilation: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    kw = dict(act=self.act, deploy=self.deploy, dtype=self.dtype, dilation=self.dilation)
    x = ConvBN(self.features, self.kernel_size, self.strides, name='primary_conv', **kw)(x, train)
    return RepConvBN(self.features, self.dw_size, groups=self.features, use_identity=True,
                     name='cheap_operation', **kw)(x, train)
