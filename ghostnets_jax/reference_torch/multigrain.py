"""PyTorch reference of MultiGrain (official layout): a torchvision ResNet-50 trunk, GeM, classifier.

Used by the parity tests and, with converted weights, by the benchmarks.
"""
from __future__ import annotations

import collections
from typing import Optional

import torch
import torchvision
from torch import nn


class TorchGeM(nn.Module):
  """GeM pooling; a fixed ``p`` is a non-persistent buffer (not in the state dict), as ours."""

  def __init__(self, p: float, learnable: bool = True):
    super().__init__()
    if learnable:
      self.p = nn.Parameter(torch.tensor(p))
    else:
      self.register_buffer('p', torch.tensor(p), persistent=False)

  def forward(self, x):
    return x.clamp(min=1e-6).pow(self.p).mean((2, 3)).pow(1.0 / self.p)


class TorchMultiGrain(nn.Module):
  """``features`` (the trunk of ``net``, default a fresh torchvision ResNet-50), ``pool`` (GeM),
  ``classifier`` (``net.fc``); ``forward`` returns (logits, L2-normalised embedding)."""

  def __init__(self, p: float = 3.0, num_classes: int = 1000, net: Optional[nn.Module] = None,
               learn_p: bool = True):
    super().__init__()
    net = net if net is not None else torchvision.models.resnet50(num_classes=num_classes)
    self.features = nn.Sequential(collections.OrderedDict(list(net.named_children())[:-2]))
    self.pool = TorchGeM(p, learn_p)
    self.classifier = net.fc

  def forward(self, x):
    emb = self.pool(self.features(x))
    return self.classifier(emb), emb / (emb.norm(dim=1, keepdim=True) + 1e-6)
