"""A MindSpore GhostNet with the parameter names of the MindSpore model zoo's GhostNet.

Mirrors the cell structure of mindspore-ai/models ``research/cv/ghostnet/src/ghostnet.py``
(``multiplier`` = ``width``, channels rounded up to multiples of 4 as that file does; our own
code): ``conv_stem``/``bn1``, a flat ``blocks`` SequentialCell of bottlenecks
(``ghost1``/``ghost2`` with ``primary_conv``/``cheap_operation`` ConvUnits of ``conv`` + ``bn``,
``dw``, ``se.conv_reduce``/``conv_expand``, ``shortcut.0/1``) plus a final ConvUnit, ``conv_head``
(1x1 conv) and ``classifier``. Used to test ``from_mindspore`` through a real MindSpore network.
"""
from __future__ import annotations

import math

import numpy as np
from mindspore import Tensor, nn, ops

from ghostnets_jax.models.ghostnet import GHOSTNET_CFGS


def ceil4(x):
  """The zoo's ``_make_divisible``: round up to a multiple of 4."""
  return int(math.ceil(x / 4) * 4)


class ConvUnit(nn.Cell):
  def __init__(self, cin, cout, k=1, stride=1, groups=1, act=True):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, k, stride, pad_mode='pad', padding=k // 2, group=groups,
                          has_bias=False)
    self.bn = nn.BatchNorm2d(cout)
    self.act = act

  def construct(self, x):
    x = self.bn(self.conv(x))
    return ops.relu(x) if self.act else x


class GhostModule(nn.Cell):
  def __init__(self, cin, cout, act=True):
    super().__init__()
    init = math.ceil(cout / 2)
    self.primary_conv = ConvUnit(cin, init, act=act)
    self.cheap_operation = ConvUnit(init, init, 3, groups=init, act=act)

  def construct(self, x):
    x1 = self.primary_conv(x)
    return ops.concat((x1, self.cheap_operation(x1)), 1)


class SE(nn.Cell):
  def __init__(self, c, rd):
    super().__init__()
    self.conv_reduce = nn.Conv2d(c, rd, 1, has_bias=True, pad_mode='pad')
    self.conv_expand = nn.Conv2d(rd, c, 1, has_bias=True, pad_mode='pad')

  def construct(self, x):
    s = ops.relu(self.conv_reduce(ops.mean(x, (2, 3), True)))
    return x * (ops.relu6(self.conv_expand(s) + 3.0) / 6.0)


class Bottleneck(nn.Cell):
  def __init__(self, cin, mid, cout, k, stride, se):
    super().__init__()
    self.ghost1 = GhostModule(cin, mid)
    self.stride = stride
    if stride > 1:
      self.dw = ConvUnit(mid, mid, k, stride, groups=mid, act=False)
    self.use_se = se > 0
    if self.use_se:
      self.se = SE(mid, ceil4(mid // 4))   # the zoo's SE(num_mid): ratio 4
    self.ghost2 = GhostModule(mid, cout, act=False)
    self.down = cin != cout or stride > 1
    if self.down:
      self.shortcut = nn.SequentialCell([ConvUnit(cin, cin, k, stride, groups=cin, act=False),
                                         ConvUnit(cin, cout, act=False)])

  def construct(self, x):
    y = self.ghost1(x)
    if self.stride > 1:
      y = self.dw(y)
    if self.use_se:
      y = self.se(y)
    y = self.ghost2(y)
    return y + (self.shortcut(x) if self.down else x)


class ZooGhostNet(nn.Cell):
  def __init__(self, num_classes=1000, width=1.0):
    super().__init__()
    stem = ceil4(16 * width)
    self.conv_stem = nn.Conv2d(3, stem, 3, 2, pad_mode='pad', padding=1, has_bias=False)
    self.bn1 = nn.BatchNorm2d(stem)
    blocks, cin = [], stem
    for stage in GHOSTNET_CFGS:
      for k, exp, c, se, s in stage:
        blocks.append(Bottleneck(cin, ceil4(exp * width), ceil4(c * width), k, s, se))
        cin = ceil4(c * width)
    blocks.append(ConvUnit(cin, ceil4(960 * width)))
    self.blocks = nn.SequentialCell(blocks)
    self.conv_head = nn.Conv2d(ceil4(960 * width), 1280, 1, has_bias=True, pad_mode='pad')
    self.classifier = nn.Dense(1280, num_classes)

  def construct(self, x):
    x = ops.relu(self.bn1(self.conv_stem(x)))
    x = ops.mean(self.blocks(x), (2, 3), True)
    x = ops.relu(self.conv_head(x))
    return self.classifier(ops.reshape(x, (x.shape[0], -1)))


def randomize(net: nn.Cell, seed: int = 0) -> nn.Cell:
  """Random weights and BN statistics (every parameter touched), in eval mode."""
  rng = np.random.RandomState(seed)
  for name, p in net.parameters_and_names():
    shape = p.shape
    if name.endswith('moving_variance'):
      v = rng.uniform(0.5, 2.0, shape)
    elif name.endswith('gamma'):
      v = rng.uniform(0.5, 1.5, shape)
    elif name.endswith(('beta', 'moving_mean', 'bias')):
      v = rng.normal(0, 0.2, shape)
    else:
      v = rng.normal(0, np.sqrt(1.0 / max(1, int(np.prod(shape[1:])))), shape)
    p.set_data(Tensor(v.astype(np.float32)))
  net.set_train(False)
  return net
