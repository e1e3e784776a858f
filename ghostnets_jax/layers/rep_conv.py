"""A multi-branch convolution that re-parameterizes into one biased convolution.

Train form (RepVGG / MobileOne style): ``act(sum_i bn_i(conv_kxk_i(x)) + bn(conv_1x1(x)) + bn(x))``
with ``N`` parallel kxk ConvBN branches, an optional 1x1 ConvBN "scale" branch and an optional
identity branch (a BatchNorm on the input). All branches share stride and groups, so their sum
is one linear map: :func:`~ghostnets_jax.layers.fusion.fold_bn` each branch, pad the 1x1 kernel to kxk,
write the identity as a kernel, and add (:func:`~ghostnets_jax.layers.fusion.merge_branches`).

RepGhost's cheap op is ``RepConvBN(c, 3, groups=c, use_identity=True)`` (one depthwise branch
beside an identity BN); GhostNetV3 uses three kxk branches with a scale (and identity) branch.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import flax.linen as nn
import jax

from ghostnets_jax.layers.activations import get_act
from ghostnets_jax.layers.conv import Conv2d, IntPair, Parts, channels, join, to_pair
from ghostnets_jax.layers.conv_bn import ConvBN
from ghostnets_jax.layers.norm import BatchNorm
from ghostnets_jax.layers.fusion import (FusionRule, fold_bn, identity_kernel, merge_branches,
                                         register_fusion_rule)

KXK_PREFIX = 'conv_kxk_'


class RepConvBN(nn.Module):
  """Parallel ConvBN branches summed, then ``act``; ``deploy=True`` is one biased conv.

  Attributes:
    features: output channels.
    kernel_size, strides, groups: shared by every branch (the scale branch is 1x1).
    num_conv_branches: number of kxk ConvBN branches (>= 1).
    use_scale: add a 1x1 ConvBN branch.
    use_identity: add a BatchNorm of the input (needs ``in == features`` and stride 1).
    act: activation after the sum.
    dilation: of the kxk branches (and of the fused conv). The 1x1 and identity branches fuse
      into the centre tap, which reads offset 0 for any dilation with PyTorch's symmetric
      padding ``d * (k - 1) // 2`` when ``k`` is odd; even kernels with such branches are refused.

  Variables: ``conv_kxk_{i}/{conv,bn}``, ``conv_scale/{conv,bn}``, ``identity/{scale,bias}``
  (+ batch_stats); deploy form ``conv/{kernel,bias}``, the layout of a deploy :class:`ConvBN`.
  """
  features: int
  kernel_size: IntPair = 3
  strides: IntPair = 1
  groups: int = 1
  num_conv_branches: int = 1
  use_scale: bool = False
  use_identity: bool = False
  act: Optional[str] = None
  deploy: bool = False
  dtype: Any = None
  dilation: IntPair = 1

  @nn.compact
  def __call__(self, x: Parts, train: bool = False) -> jax.Array:
    """``x``: an array or channel parts (the deploy conv convolves them part by part)."""
    if self.num_conv_branches < 1:
      raise ValueError(f'{self.name}: num_conv_branches must be >= 1, got {self.num_conv_branches}')
    if not self.deploy:
      x = join(x)
    if self.use_identity and (channels(x) != self.features or to_pair(self.strides) != (1, 1)):
      raise ValueError(f'{self.name}: an identity branch needs in == out channels and stride 1 '
                       f'(got {channels(x)} -> {self.features}, stride {self.strides}).')
    if (self.use_scale or self.use_identity) and any(k % 2 == 0 for k in to_pair(self.kernel_size)):
      raise ValueError(f'{self.name}: 1x1/identity branches need an odd kernel to sit at its '
                       f'centre, got kernel_size={self.kernel_size}.')
    if self.deploy:
      y = Conv2d(self.features, self.kernel_size, self.strides, groups=self.groups, use_bias=True,
                 dilation=self.dilation, dtype=self.dtype, name='conv')(x)
      return get_act(self.act)(y)
    kw = dict(strides=self.strides, groups=self.groups, dtype=self.dtype)
    y = sum(ConvBN(self.features, self.kernel_size, dilation=self.dilation,
                   name=f'{KXK_PREFIX}{i}', **kw)(x, train)
            for i in range(self.num_conv_branches))
    if self.use_scale:
      y = y + ConvBN(self.features, 1, name='conv_scale', **kw)(x, train)
    if self.use_identity:
      y = y + BatchNorm(use_running_average=not train, dtype=self.dtype, name='identity')(x)
    return get_act(self.act)(y)


def _is_rep_conv(p, s) -> bool:
  keys = set(p)
  kxk = {k for k in keys if k.startswith(KXK_PREFIX)}
  return bool(kxk) and keys - kxk <= {'conv_scale', 'identity'} and isinstance(s, Mapping) and set(s) == keys


def _fuse_rep_conv(p, s) -> dict:
  kxk = sorted((k for k in p if k.startswith(KXK_PREFIX)), key=lambda k: int(k[len(KXK_PREFIX):]))
  branches = [fold_bn(p[k]['conv']['kernel'], p[k]['bn'], s[k]['bn']) for k in kxk]
  if 'conv_scale' in p:
    branches.append(fold_bn(p['conv_scale']['conv']['kernel'], p['conv_scale']['bn'], s['conv_scale']['bn']))
  if 'identity' in p:
    kh, kw, per_group, out = branches[0][0].shape
    ident = identity_kernel(out, out // per_group, (kh, kw), branches[0][0].dtype)
    branches.append(fold_bn(ident, p['identity'], s['identity']))
  kernel, bias = merge_branches(branches)
  return {'conv': {'kernel': kernel, 'bias': bias}}


register_fusion_rule(FusionRule('rep_conv_bn', _is_rep_conv, _fuse_rep_conv, multi_branch=True))
