"""Independent PyTorch reference of S-GhostNet (large mode), written from the MindSpore model file.

It follows ``big_net.py``'s ``gen_cfgs_large`` and module layout (``ConvBnAct`` with
``conv``/``bn``, ``dw``, ``se``, ``shortcut`` as a two-element Sequential, the final ConvBnAct as
``blocks.6``), so its state-dict keys are the MindSpore parameter names with PyTorch leaf names.
Used by the parity tests and, with converted weights, by the benchmarks.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


ARCHS = {'s_ghostnet_b1': ((1, 2, 3, 4, 3, 6), (28, 44, 72, 140, 196, 280)),
         's_ghostnet_b4': ((3, 5, 5, 12, 6, 14), (36, 60, 108, 168, 232, 336))}


def _div(v, d=4):
  new = max(d, int(v + d / 2) // d * d)
  return new + d if new < 0.9 * v else new


def hswish(x):
  return x * F.relu6(x + 3.0) / 6.0


class ConvBnAct(nn.Module):
  def __init__(self, cin, cout, k, stride=1, groups=1, act=True):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False)
    self.bn = nn.BatchNorm2d(cout)
    self.act = act

  def forward(self, x):
    x = self.bn(self.conv(x))
    return F.relu(x) if self.act else x


class Ghost(nn.Module):
  def __init__(self, cin, cout, act=True):
    super().__init__()
    init = math.ceil(cout / 2)
    self.primary_conv = ConvBnAct(cin, init, 1, act=act)
    self.cheap_operation = ConvBnAct(init, init, 3, groups=init, act=act)

  def forward(self, x):
    x1 = self.primary_conv(x)
    return torch.cat([x1, self.cheap_operation(x1)], 1)


class Se(nn.Module):
  def __init__(self, c, ratio, divisor):
    super().__init__()
    mid = _div(c * ratio, divisor)
    self.conv_reduce = nn.Conv2d(c, mid, 1)
    self.conv_expand = nn.Conv2d(mid, c, 1)

  def forward(self, x):
    s = F.relu(self.conv_reduce(x.mean((2, 3), keepdim=True)))
    return x * (F.relu6(self.conv_expand(s) + 3.0) * 0.16666667)


class Bottleneck(nn.Module):
  def __init__(self, cin, mid, cout, k, stride, se_ratio, divisor=8):
    super().__init__()
    self.ghost1 = Ghost(cin, mid)
    self.stride = stride
    if stride > 1:
      self.dw = ConvBnAct(mid, mid, k, stride, groups=mid, act=False)
    self.se = Se(mid, se_ratio, divisor) if se_ratio > 0 else None
    self.ghost2 = Ghost(mid, cout, act=False)
    self.down = cin != cout or stride != 1
    if self.down:
      self.shortcut = nn.Sequential(ConvBnAct(cin, cin, k, stride, groups=cin, act=False),
                                    ConvBnAct(cin, cout, 1, act=False))

  def forward(self, x):
    y = self.ghost1(x)
    if self.stride > 1:
      y = self.dw(y)
    if self.se is not None:
      y = self.se(y)
    y = self.ghost2(y)
    return y + (self.shortcut(x) if self.down else x)


def large_table(layers, channels):
  """big_net.gen_cfgs_large, written out: [k, hidden, out, se, stride] per block."""
  cfgs = []
  for i, n in enumerate(layers):
    stage = []
    for j in range(n):
      if i == 0:
        stage.append([3, channels[0], channels[0], 0.1, 1])
      elif i in (1, 2):
        k = 3 if i == 1 else 5
        stage.append([k, channels[i - 1] * 3, channels[i], 0.1, 2] if j == 0
                     else [k, channels[i] * 3, channels[i], 0.1, 1])
      elif i == 3:
        stage.append([3, channels[2] * 6, channels[3], 0.1, 2] if j == 0
                     else [3, channels[3] * 2.5, channels[3], 0.1, 1])
      elif i == 4:
        stage.append([3, channels[3] * 6, channels[4], 0.1, 1] if j == 0
                     else [3, channels[4] * 6, channels[4], 0.1, 1])
      else:
        stage.append([5, channels[4] * 6, channels[5], 0.1, 2] if j == 0
                     else [5, channels[5] * 6, channels[5], 0.1, 1])
    cfgs.append(stage)
  return cfgs


class TorchSGhostNet(nn.Module):
  def __init__(self, layers, channels, num_classes=1000):
    super().__init__()
    cin = _div(channels[0])
    self.conv_stem = nn.Conv2d(3, cin, 3, 2, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cin)
    stages = []
    for cfg in large_table(layers, channels):
      blocks = []
      for k, exp, c, se, s in cfg:
        blocks.append(Bottleneck(cin, _div(exp), _div(c), k, s, se))
        cin, last_exp = _div(c), exp
      stages.append(nn.Sequential(*blocks))
    stages.append(ConvBnAct(cin, _div(last_exp), 1))
    self.blocks = nn.Sequential(*stages)
    head = max(1280, int(cin * 5))
    self.conv_head = nn.Conv2d(_div(last_exp), head, 1)
    self.classifier = nn.Linear(head, num_classes)

  def forward(self, x):
    x = self.blocks(hswish(self.bn1(self.conv_stem(x))))
    x = hswish(self.conv_head(x.mean((2, 3), keepdim=True))).flatten(1)
    return self.classifier(x)
