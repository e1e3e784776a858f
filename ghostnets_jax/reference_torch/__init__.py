"""PyTorch references of the registered models, for the parity tests and the benchmarks.

``build(name)`` returns the model named by the registry's ``reference`` field (``timm:<name>``,
``torchvision:<name>``) or, for models those libraries lack, our own independent PyTorch
implementation (:data:`OWN_REFERENCES`: G-GhostNet, GhostNets_D, S-GhostNet, MultiGrain).
``random_pair`` gives it random weights and the same weights as Flax variables (through
``ghostnets_jax.convert.from_torch``), so both frameworks run the same function. Needs ``torch`` (and ``timm`` / ``torchvision``).
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from ghostnets_jax.convert import from_torch
from ghostnets_jax.registry import get_spec


def _g_ghost_regnetx(tag: str) -> Callable[[int], torch.nn.Module]:
  def build(num_classes: int) -> torch.nn.Module:
    from ghostnets_jax.reference_torch.g_ghost import g_ghost_regnetx
    return g_ghost_regnetx(tag, num_classes=num_classes)
  return build


def _torchvision_regnetx(tag: str) -> Callable[[int], torch.nn.Module]:
  """torchvision's ``RegNet`` class with the stages of the official G-GhostNet table (pycls's
  RegNetX), for the widths torchvision has no named model of; a group width above a stage's
  width becomes that width (one group), as in pycls and the official code."""
  def build(num_classes: int) -> torch.nn.Module:
    from torchvision.models.regnet import BlockParams, RegNet
    from ghostnets_jax.reference_torch.g_ghost import OFFICIAL_WIDTHS
    depths, widths, group_width = OFFICIAL_WIDTHS[tag]
    params = BlockParams(depths=depths, widths=widths,
                         group_widths=[min(group_width, w) for w in widths],
                         bottleneck_multipliers=[1.0] * 4, strides=[2] * 4)
    return RegNet(params, num_classes=num_classes)
  return build


def _g_ghost_resnet50(num_classes: int) -> torch.nn.Module:
  from ghostnets_jax.reference_torch.g_ghost import GGhostResNet
  return GGhostResNet([3, 4, 6, 3], num_classes=num_classes)


def _ghostnet_d_101(num_classes: int) -> torch.nn.Module:
  from ghostnets_jax.reference_torch.ghostnet_d import GhostNetD
  return GhostNetD(num_classes=num_classes)


def _s_ghostnet(name: str) -> Callable[[int], torch.nn.Module]:
  def build(num_classes: int) -> torch.nn.Module:
    from ghostnets_jax.reference_torch.s_ghostnet import ARCHS, TorchSGhostNet
    return TorchSGhostNet(*ARCHS[name], num_classes=num_classes)
  return build


def _multigrain(num_classes: int) -> torch.nn.Module:
  from ghostnets_jax.reference_torch.multigrain import TorchMultiGrain
  return TorchMultiGrain(3.0, num_classes=num_classes, learn_p=False)  # the registry default


_G_GHOST_TAGS = ('002', '004', '006', '008', '016', '032', '040', '064', '080', '120', '160', '320')
# Models without a timm / torchvision counterpart: name -> builder(num_classes).
OWN_REFERENCES: dict[str, Callable[[int], torch.nn.Module]] = {
    **{f'g_ghost_regnetx_{t}': _g_ghost_regnetx(t) for t in _G_GHOST_TAGS},
    **{f'regnetx_{t}': _torchvision_regnetx(t) for t in ('002', '004', '006', '040', '064', '120')},
    'g_ghost_resnet50': _g_ghost_resnet50,
    'ghostnet_d_101': _ghostnet_d_101,
    's_ghostnet_b1': _s_ghostnet('s_ghostnet_b1'),
    's_ghostnet_b4': _s_ghostnet('s_ghostnet_b4'),
    'multigrain_resnet50': _multigrain,
}


def source(name: str) -> str:
  """Where the reference of ``name`` comes from: ``timm:x``, ``torchvision:x`` or ``ours:name``."""
  spec = get_spec(name)
  if spec.reference:
    return spec.reference
  if name in OWN_REFERENCES:
    return f'ours:{name}'
  raise ValueError(f'{name} has no PyTorch reference: set `reference=` in its @register_model or '
                   f'add a builder to ghostnets_jax.reference_torch.OWN_REFERENCES.')


def build(name: str, num_classes: int = 1000) -> torch.nn.Module:
  """The PyTorch reference of registry model ``name`` (random weights, eval mode)."""
  lib, _, ref = source(name).partition(':')
  if lib == 'timm':
    import timm
    model = timm.create_model(ref, pretrained=False, num_classes=num_classes)
  elif lib == 'torchvision':
    import torchvision
    model = getattr(torchvision.models, ref)(num_classes=num_classes)
  elif lib == 'ours':
    model = OWN_REFERENCES[ref](num_classes)
  else:
    raise ValueError(f'{name}: unknown reference library {lib!r} in {source(name)!r}')
  return model.eval()


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
  """Random BN affine params and running stats (in place), so BN conversion/folding is exercised."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
        m.running_mean.normal_(0, 0.2, generator=g)
        m.running_var.uniform_(0.5, 2.0, generator=g)
        m.weight.uniform_(0.5, 1.5, generator=g)
        m.bias.normal_(0, 0.2, generator=g)
  return model


def random_pair(name: str, num_classes: int = 1000, seed: int = 0) -> tuple[torch.nn.Module, dict]:
  """The reference of ``name`` with random weights and BN statistics, and the same weights as
  Flax variables (``ghostnets_jax.convert.from_torch``): both frameworks compute one function."""
  torch.manual_seed(seed)
  model = randomize_bn(build(name, num_classes), seed)
  return model, from_torch(name, model.state_dict())


def deploy(model: torch.nn.Module) -> torch.nn.Module:
  """The reference's own inference form: timm's ``reparameterize_model`` on a copy (it merges
  multi-branch layers such as RepGhost's and GhostNetV3's; plain models come back unchanged)."""
  from timm.utils import reparameterize_model
  return reparameterize_model(copy.deepcopy(model)).eval()


def logits(out: Any) -> torch.Tensor:
  """The logits of a reference's output (MultiGrain returns (logits, embedding))."""
  return out[0] if isinstance(out, (tuple, list)) else out
