"""Independent PyTorch reference of the G-Ghost stage and G-Ghost RegNetX.

Used by the parity tests and, with our converted weights, as the PyTorch side of the
benchmarks for the models timm and torchvision lack. Written from the G-GhostNet paper's
description and the official ``g_ghost_regnet.py`` as captured in seed 001 (lines lost in the
capture are restored here the
way the stage's shapes require: ``m_list.append(e)`` in the middle-block loop, since the merge
conv's input width is ``planes + raw_planes * (blocks - 2)``; ``inplanes`` for ``self.inplanes``
in the stage's shortcut test; and the ``if layers[k] > 2: Stage else: plain layer`` choice).
Module names follow the official code (``conv1``, ``bn1``, ``layerN.base``, ``layerN.layers.K``,
``layerN.merge.1/2/4/5``, ``layerN.cheap.0/1``, ``layerN.end``, ``fc``); the ResNet-hosted
stages use torchvision's ``Bottleneck`` as the host block.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.resnet import Bottleneck as ResNetBottleneck


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, 1, stride, bias=False)


class RegNetBottleneck(nn.Module):
  """RegNetX block of the official code: 1x1 -> grouped 3x3 (groups = width / group_width) -> 1x1."""

  def __init__(self, inplanes, planes, stride=1, downsample=None, group_width=1):
    super().__init__()
    self.conv1, self.bn1 = conv1x1(inplanes, planes), nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, groups=planes // min(planes, group_width),
                           bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3, self.bn3 = conv1x1(planes, planes), nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    out = torch.relu(self.bn1(self.conv1(x)))
    out = torch.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class Slice(nn.Module):
  """The official code's ``LambdaLayer(lambda x: x[:, :raw_planes])``."""

  def __init__(self, n):
    super().__init__()
    self.n = n

  def forward(self, x):
    return x[:, :self.n]


class Stage(nn.Module):
  """G-Ghost stage. ``make_block(cin, cout, stride, downsample, middle)`` builds a host block.

  Channel slicing as the official code; cheap op ``cheap`` (1x1 conv + BN, ``'identity'``,
  ``'dw3'``, ``'dw5'``).
  """

  def __init__(self, make_block, inplanes, planes, blocks, stride, raw_planes, cheap='conv1x1'):
    super().__init__()
    downsample = None
    if stride != 1 or inplanes != planes:  # restored: `self.inplanes` in the capture
      downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
    self.base = make_block(inplanes, planes, stride, downsample, False)
    self.end = make_block(planes, planes, 1, None, False)
    self.raw_planes = raw_planes
    cheap_planes = planes - raw_planes
    self.merge = nn.Sequential(
        nn.AdaptiveAvgPool2d(1), conv1x1(planes + raw_planes * (blocks - 2), cheap_planes),
        nn.BatchNorm2d(cheap_planes), nn.ReLU(), conv1x1(cheap_planes, cheap_planes),
        nn.BatchNorm2d(cheap_planes))
    if cheap == 'conv1x1':
      self.cheap = nn.Sequential(conv1x1(cheap_planes, cheap_planes), nn.BatchNorm2d(cheap_planes))
    elif cheap == 'identity':
      self.cheap = nn.Sequential()
    else:
      k = int(cheap[2:])
      self.cheap = nn.Sequential(
          nn.Conv2d(cheap_planes, cheap_planes, k, 1, k // 2, groups=cheap_planes, bias=False),
          nn.BatchNorm2d(cheap_planes))
    first_shortcut = nn.Sequential(Slice(raw_planes))
    layers = [make_block(raw_planes, raw_planes, 1, first_shortcut, True)]
    for _ in range(2, blocks - 1):
      layers.append(make_block(raw_planes, raw_planes, 1, None, True))
    self.layers = nn.Sequential(*layers)

  def forward(self, x):
    x0 = self.base(x)
    m_list = [x0]
    e = x0[:, :self.raw_planes]
    for layer in self.layers:
      e = layer(e)
      m_list.append(e)  # restored: lost in the capture
    m = self.merge(torch.cat(m_list, 1))
    c = x0[:, self.raw_planes:]
    c = self.cheap(c)
    c = torch.relu(c + m)
    return self.end(torch.cat((e, c), 1))


def plain_layer(make_block, inplanes, planes, blocks, stride):
  downsample = None
  if stride != 1 or inplanes != planes:
    downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
  layers = [make_block(inplanes, planes, stride, downsample, False)]
  layers += [make_block(planes, planes, 1, None, False) for _ in range(1, blocks)]
  return nn.Sequential(*layers)


class GGhostRegNet(nn.Module):
  """Official G-Ghost RegNetX: 3x3 stem, layer1 plain, layers 2-4 G-Ghost when deeper than 2."""

  def __init__(self, layers, widths, group_width, num_classes=1000, cheap='conv1x1', ghost=True,
               cheap_ratio=0.5):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(32)
    mid_gw = int(group_width * 0.75)

    def make_block(cin, cout, stride, downsample, middle):
      return RegNetBottleneck(cin, cout, stride, downsample, mid_gw if middle else group_width)

    inplanes = 32
    for i, (n, w) in enumerate(zip(layers, widths)):
      if ghost and i > 0 and n > 2:  # restored: the `if layers[k] > 2:` / `else:` lines
        raw = int(w * (1 - cheap_ratio) / mid_gw) * mid_gw
        layer = Stage(make_block, inplanes, w, n, 2, raw, cheap)
      else:
        layer = plain_layer(make_block, inplanes, w, n, 2)
      setattr(self, f'layer{i + 1}', layer)
      inplanes = w
    self.fc = nn.Linear(widths[-1], num_classes)

  def forward(self, x):
    x = torch.relu(self.bn1(self.conv1(x)))
    for i in range(1, 5):
      x = getattr(self, f'layer{i}')(x)
    return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class GGhostResNet(nn.Module):
  """ResNet (torchvision Bottleneck, 7x7 stem) with every stage a G-Ghost stage."""

  def __init__(self, layers, widths=(256, 512, 1024, 2048), num_classes=1000, cheap='conv1x1',
               cheap_ratio=0.5):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.maxpool = nn.MaxPool2d(3, 2, 1)

    def make_block(cin, cout, stride, downsample, middle):
      return ResNetBottleneck(cin, cout // 4, stride, downsample)

    inplanes = 64
    for i, (n, out) in enumerate(zip(layers, widths)):
      raw = int(out * (1 - cheap_ratio) / 4) * 4
      layer = Stage(make_block, inplanes, out, n, 1 if i == 0 else 2, raw, cheap)
      setattr(self, f'layer{i + 1}', layer)
      inplanes = out
    self.fc = nn.Linear(inplanes, num_classes)

  def forward(self, x):
    x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
    for i in range(1, 5):
      x = getattr(self, f'layer{i}')(x)
    return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


# (layers, widths, group_width) of g_ghost_regnetx_{tag} in the official g_ghost_regnet.py
# (github.com/huawei-noah/Efficient-AI-Backbones, g_ghost_pytorch).
OFFICIAL_WIDTHS = {
    '002': ([1, 1, 4, 7], [24, 56, 152, 368], 8),
    '004': ([1, 2, 7, 12], [32, 64, 160, 384], 16),
    '006': ([1, 3, 5, 7], [48, 96, 240, 528], 24),
    '008': ([1, 3, 7, 5], [64, 128, 288, 672], 16),
    '016': ([2, 4, 10, 2], [72, 168, 408, 912], 24),
    '032': ([2, 6, 15, 2], [96, 192, 432, 1008], 48),
    '040': ([2, 5, 14, 2], [80, 240, 560, 1360], 40),
    '064': ([2, 4, 10, 1], [168, 392, 784, 1624], 56),
    '080': ([2, 5, 15, 1], [80, 240, 720, 1920], 120),
    '120': ([2, 5, 11, 1], [224, 448, 896, 2240], 112),
    '160': ([2, 6, 13, 1], [256, 512, 896, 2048], 128),
    '320': ([2, 7, 13, 1], [336, 672, 1344, 2520], 168),
}


def g_ghost_regnetx(tag: str, num_classes: int = 1000, ghost: bool = True) -> GGhostRegNet:
  """``g_ghost_regnetx_{tag}`` of the official code (``ghost=False``: its plain RegNetX host)."""
  layers, widths, group_width = OFFICIAL_WIDTHS[tag]
  return GGhostRegNet(layers, widths, group_width, num_classes=num_classes, ghost=ghost)


def n_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())
