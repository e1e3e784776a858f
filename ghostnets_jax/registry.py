"""The one registry of models: names, builders and default configs (input size, paper, top-1)."""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from typing import Any, Callable, Optional

import flax.linen as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What the registry knows about a model besides its builder.

  Attributes:
    name: registry name, e.g. ``ghostnet_100``.
    family: model file it lives in (keys the weight converters).
    builder: ``(**module_fields) -> nn.Module``.
    input_size: default (square) training/eval resolution.
    crop_pct, interpolation, mean, std: eval preprocessing (timm conventions).
    paper, paper_url: where the architecture comes from.
    top1: published ImageNet-1k top-1 (%), ``top1_source`` says where it was published.
    reference: the PyTorch reference used by the parity tests (``timm:<name>``, ``torchvision:<name>``).
  """
  name: str
  family: str
  builder: Callable[..., nn.Module]
  input_size: int = 224
  crop_pct: float = 0.875
  interpolation: str = 'bicubic'
  mean: tuple[float, float, float] = IMAGENET_MEAN
  std: tuple[float, float, float] = IMAGENET_STD
  paper: str = ''
  paper_url: str = ''
  top1: Optional[float] = None
  top1_source: str = ''
  reference: Optional[str] = None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(family: str, **cfg: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
  """Decorator registering a builder function under its own name."""
  def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    name = fn.__name__
    if name in _REGISTRY:
      raise ValueError(f'model {name!r} is registered twice')
    _REGISTRY[name] = ModelSpec(name=name, family=family, builder=fn, **cfg)
    return fn
  return deco


def _ensure_loaded() -> None:
  import ghostnets_jax.models  # noqa: F401  (registers every family)


def list_models(pattern: str = '*') -> list[str]:
  """Registered model names matching a shell-style ``pattern``, sorted."""
  _ensure_loaded()
  return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_spec(name: str) -> ModelSpec:
  """The :class:`ModelSpec` of ``name``; unknown names raise a ``ValueError`` with suggestions."""
  _ensure_loaded()
  if name not in _REGISTRY:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
    hint = f' Did you mean: {", ".join(close)}?' if close else ''
    raise ValueError(f'Unknown model {name!r}.{hint} See ghostnets_jax.list_models() for all '
                     f'{len(_REGISTRY)} models.')
  return _REGISTRY[name]


def module_fields(cls: type) -> list[str]:
  return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in ('parent', 'name')]


def create_model(name: str, num_classes: int = 1000, **overrides: Any) -> nn.Module:
  """Builds the Flax module of ``name``; ``overrides`` set module fields (dtype, drop_rate, ...)."""
  spec = get_spec(name)
  try:
    return spec.builder(num_classes=num_classes, **overrides)
  except TypeError as e:
    module_cls = type(spec.builder(num_classes=num_classes))
    bad = sorted(set(overrides) - set(module_fields(module_cls)))
    if not bad:
      raise
    raise ValueError(f'{name}: unknown option(s) {bad}; {module_cls.__name__} accepts '
                     f'{module_fields(module_cls)}.') from e
