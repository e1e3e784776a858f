"""Independent PyTorch reference of GhostNets_D: ResNet-101 with Huawei's Vega ``GhostModule``.

Written from the published structure of ``GhostModule`` in Huawei's AutoML toolkit Vega
(``noah-vega`` 1.8.5 on PyPI, ``vega/modules/blocks/ghost.py``, Apache-2.0) and the GhostNets_D
description (IJCV 2022, arXiv:2201.03297: "for Davinci chips, slicing introduces a larger
latency, so we apply a 1x1 convolution to replace it"). For a stage of ``blocks`` bottlenecks
of ``planes`` (output ``4 * planes``), ``cheap = int(planes * ratio)``, ``raw = planes - cheap``:

* ``base``: a torchvision-style bottleneck with the stride (projection shortcut when needed);
* ``layers``: a bias-free 1x1 conv ``4 planes -> 4 raw`` (in place of a slice), then
  ``blocks - 2`` bottlenecks ``4 raw -> 4 raw`` with identity shortcuts;
* ``merge``: global average pool -> 1x1 conv (no bias) -> BN over the concatenation of the
  base output and the bottleneck outputs (not the 1x1 conv's), ``4 raw * blocks`` channels;
* ``cheap``: 1x1 conv (no bias) + BN of the whole base output, ``4 planes -> 4 cheap``;
* ``end(concat(e, relu(cheap + merge)))`` with ``end`` a bottleneck with identity shortcut.

Names: torchvision's ``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``; inside a stage the
module's own ``base``, ``layers.0`` (the conv), ``layers.K``, ``merge.1/2``, ``cheap.0/1``, ``end``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.resnet import Bottleneck

from ghostnets_jax.reference_torch.g_ghost import GGhostResNet


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, 1, stride, bias=False)


class VegaGhostStage(nn.Module):
  """One GhostX stage in the wiring of Vega's ``GhostModule`` (``blocks >= 3``)."""

  def __init__(self, inplanes: int, planes: int, blocks: int, stride: int = 1,
               cheap_ratio: float = 0.5):
    super().__init__()
    out = 4 * planes
    downsample = None
    if stride != 1 or inplanes != out:
      downsample = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
    self.base = Bottleneck(inplanes, planes, stride, downsample)
    self.end = Bottleneck(out, planes)
    cheap = int(planes * cheap_ratio)
    raw = planes - cheap
    mix = out + 4 * raw * (blocks - 2)
    self.merge = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv1x1(mix, 4 * cheap),
                               nn.BatchNorm2d(4 * cheap))
    self.cheap = nn.Sequential(conv1x1(out, 4 * cheap), nn.BatchNorm2d(4 * cheap))
    self.layers = nn.Sequential(conv1x1(out, 4 * raw),
                                *[Bottleneck(4 * raw, raw) for _ in range(blocks - 2)])

  def forward(self, x):
    x0 = self.base(x)
    mix = [x0]
    e = self.layers[0](x0)
    for layer in self.layers[1:]:
      e = layer(e)
      mix.append(e)
    m = self.merge(torch.cat(mix, 1))
    c = torch.relu(self.cheap(x0) + m)
    return self.end(torch.cat((e, c), 1))


class GhostNetD(nn.Module):
  """ResNet (7x7 stem, max pool) whose four stages are :class:`VegaGhostStage`."""

  def __init__(self, layers=(3, 4, 23, 3), planes=(64, 128, 256, 512), num_classes=1000,
               cheap_ratio=0.5):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = 64
    for i, (n, p) in enumerate(zip(layers, planes)):
      setattr(self, f'layer{i + 1}',
              VegaGhostStage(inplanes, p, n, 1 if i == 0 else 2, cheap_ratio))
      inplanes = 4 * p
    self.fc = nn.Linear(inplanes, num_classes)

  forward = GGhostResNet.forward   # stem, max pool, layer1..4, average pool, fc
