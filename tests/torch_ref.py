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


def torch_forward_float64(model: torch.nn.Module, x_nhwc: np.ndarray) -> np.ndarray:
  """:func:`torch_forward` of a float64 copy of ``model``: the logits without float32 rounding, a
  reference for deep models whose float32 rounding alone (PyTorch's or ours) nears 1e-4."""
  import copy
  return torch_forward(copy.deepcopy(model).double(), np.asarray(x_nhwc, np.float64))


def timm_model(name: str, seed: int = 0, calibrate_at: int | None = None,
               **kwargs) -> torch.nn.Module:
  """A timm model with random weights and BN statistics (of ``calibrate_at``-pixel random images
  when given, :func:`calibrate_bn`), in eval mode."""
  import timm
  torch.manual_seed(seed)
  model = randomize_bn(timm.create_model(name, pretrained=False, **kwargs), seed)
  return calibrate_bn(model, calibrate_at) if calibrate_at else model.eval()


def calibrate_bn(model: torch.nn.Module, size: int = 64, seed: int = 7) -> torch.nn.Module:
  """Sets every BN's running statistics to those of 4 random images (one train-mode pass with a
  cumulative average), keeping the random BN scale/bias; returns the model in eval mode.

  With arbitrary random statistics a deep network's activations collapse: its logits change by
  ~1e-4 between two input images, so an absolute 1e-4 parity check would not see the trunk. With
  statistics of real activations each BN normalizes, as in a trained network, and the logits of
  two images differ by 0.05-4 (GhostNet, RepGhost, GhostNetV3, S-GhostNet). Calibrate at the size
  the model is then run at: statistics of 64-pixel images make a GhostNetV2's activations grow
  to logits of ~40 at 224 pixels, where float32 rounding differences are amplified past 1e-3."""
  bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
  momenta = [m.momentum for m in bns]
  for m in bns:
    m.reset_running_stats()
    m.momentum = None
  torch_forward(model.train(), images((4, size, size, 3), seed=seed))
  for m, momentum in zip(bns, momenta):
    m.momentum = momentum
  return model.eval()


def assert_logits_match(out, expected, atol: float = 1e-4, min_spread: float = 1e-2) -> None:
  """``max |out - expected| < atol`` for a batch of >= 2 images, where the bound means something:
  the reference's logits depend on the input (two images' logits differ by >= ``min_spread`` =
  100 x atol), so a network that gets only the head right, or returns the same logits for every
  image, fails; a logit scale so large that float32 rounding alone exceeds ``atol`` fails too."""
  out, expected = np.asarray(out, np.float64), np.asarray(expected, np.float64)
  assert out.shape == expected.shape and expected.shape[0] >= 2, (out.shape, expected.shape)
  spread = float(np.abs(expected - expected.mean(0)).max())
  assert spread >= min_spread, f'reference logits barely depend on the input ({spread:.2g})'
  diff = float(np.abs(out - expected).max())
  assert diff < atol, f'max |ours - reference| = {diff:.3g} (>= {atol:g}; input spread {spread:.3g})'


def images(shape, seed: int = 0) -> np.ndarray:
  return np.random.RandomState(seed).randn(*shape).astype(np.float32)


def reference_model(name: str, num_classes: int) -> tuple[torch.nn.Module, str]:
  """(the registry model's PyTorch reference: timm, torchvision or our own torch code, i.e.
  ``ghostnets_jax.reference_torch.build``; its device). Built on the meta device (shapes only)
  where it can be; torchvision's RegNet computes its widths from tensors, so on the CPU."""
  from ghostnets_jax import reference_torch
  try:
    with torch.device('meta'):
      return reference_torch.build(name, num_classes), 'meta'
  except NotImplementedError:
    return reference_torch.build(name, num_classes), 'cpu'


def reference_param_count(name: str, num_classes: int) -> int:
  return sum(p.numel() for p in reference_model(name, num_classes)[0].parameters())


def reference_feature_channels(name: str, strides=(2, 4, 8, 16, 32), size: int = 64) -> dict:
  """``{stride: channels}`` of the reference's feature maps, read from a forward at ``size``
  with hooks on every module: below the last stride, the channels entering the first (outermost)
  module that halves the resolution from size/stride (the next stage, or a stem's max pool);
  at the last stride, those of the last module to finish with a size/stride map (the last stage,
  before global pooling)."""
  model, device = reference_model(name, 10)
  calls, handles = [], []

  def res(shape):
    return size // shape[2] if shape is not None and len(shape) == 4 and shape[2] else None

  def pre(module, args):
    x = args[0] if args and isinstance(args[0], torch.Tensor) else None
    calls.append([x.shape if x is not None else None, None])
    module.__dict__.setdefault('_shape_calls', []).append(calls[-1])

  def post(module, args, out):
    y = out[0] if isinstance(out, (tuple, list)) else out
    module.__dict__['_shape_calls'].pop()[1] = y.shape if isinstance(y, torch.Tensor) else None
    finished.append(y.shape if isinstance(y, torch.Tensor) else None)

  finished = []
  for m in model.modules():
    handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
  try:
    with torch.no_grad():
      model(torch.zeros(1, 3, size, size, device=device))
  finally:
    for h in handles:
      h.remove()
  out = {}
  for x, y in calls:
    s = res(x)
    if s in strides[:-1] and res(y) == 2 * s:
      out.setdefault(s, x[1])
  last = [y[1] for y in finished if res(y) == strides[-1]]
  if last:
    out[strides[-1]] = last[-1]
  return out
