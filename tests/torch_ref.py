"""Helpers for comparing against PyTorch references (timm / torchvision / our own torch code)."""
from __future__ import annotations

import numpy as np
import torch

from ghostnets_jax.reference_torch import randomize_bn  # noqa: F401  (the tests' helper)

# One intra-op thread: pytest runs one worker per core, and two OpenMP threads per worker on a
# loaded 2-core machine made small (grouped-conv) forwards 100x slower (3 s instead of 30 ms).
torch.set_num_threads(1)


def damp_residual_bns(model: torch.nn.Module, suffixes=('bn3', 'f.c.1'), factor: float = 0.2) -> torch.nn.Module:
  """Scales the last BN of each residual branch: deep ResNets with random BN statistics otherwise
  grow logits to ~1e4, where float32 rounding hides real mismatches behind a large absolute error."""
  with torch.no_grad():
    for name, m in model.named_modules():
      if name.endswith(tuple(suffixes)) and isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
        m.weight.mul_(factor)
        m.bias.mul_(factor)
  return model


def torch_forward(model: torch.nn.Module, x_nhwc: np.ndarray) -> np.ndarray:
  """Runs a torch model on an NHWC numpy batch, returns numpy."""
  with torch.no_grad():
    return model(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))).numpy()


def timm_model(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
  import timm
  torch.manual_seed(seed)
  return randomize_bn(timm.create_model(name, pretrained=False, **kwargs), seed).eval()


def images(shape, seed: int = 0) -> np.ndarray:
  return np.random.RandomState(seed).randn(*shape).astype(np.float32)
