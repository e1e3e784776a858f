"""The one registry of models: names, builders and what each model is, as data.

A model file registers each variant with :func:`register_model`, declaring on its entry the
default config (input size, mean/std, crop, interpolation), the paper and published top-1, and
how its weights are named in PyTorch (:class:`TorchRules`) and MindSpore
(:class:`MindSporeRules`) checkpoints. Everything else (weight conversion, export, training,
benchmarks) reads models through :func:`get_spec` / :func:`create_model` only.

This module imports nothing of ghostnets_jax: the package ``__init__`` imports the model files,
which fills the registry.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from typing import Any, Callable, Optional, Sequence, Union

import flax.linen as nn

# torchvision / timm ImageNet normalisation: the package's one copy.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Replacement = Union[str, Callable[[re.Match], str]]

# Flax leaf (collection, name) -> PyTorch leaf name.
LEAF_NAMES = {('params', 'kernel'): 'weight', ('params', 'scale'): 'weight',
              ('params', 'bias'): 'bias', ('batch_stats', 'mean'): 'running_mean',
              ('batch_stats', 'var'): 'running_var'}


@dataclasses.dataclass(frozen=True)
class TorchRules:
  """How a model's PyTorch checkpoints are named.

  A flax leaf path such as ``params/blocks_1_0/ghost1/primary_conv/conv/kernel`` is first turned
  into ``blocks_1_0.ghost1.primary_conv.conv.weight`` (collection dropped, ``/`` -> ``.``, leaf
  renamed: kernel/scale -> weight, mean -> running_mean, var -> running_var), then ``rules``
  rewrite it into the PyTorch key (``blocks.1.0.ghost1.primary_conv.0.weight``).

  Attributes:
    rules: ``(pattern, replacement)`` regex substitutions applied in order to the dotted path.
    head_key: state-dict key of the classifier weight (used to infer ``num_classes``).
    ignore: patterns of checkpoint keys that carry no weights (e.g. ``num_batches_tracked``).
    filter: normalises a raw checkpoint dict (official names -> reference names) before mapping.
    deploy_rules: rules for the re-parameterized (deploy) form, when they differ.
  """
  rules: Sequence[tuple[str, Replacement]]
  head_key: Optional[str] = 'classifier.weight'
  ignore: Sequence[str] = (r'num_batches_tracked$',)
  filter: Optional[Callable[[dict], dict]] = None
  deploy_rules: Optional[Sequence[tuple[str, Replacement]]] = None

  def key(self, path: Sequence[str], deploy: bool = False) -> str:
    collection, *mods, leaf = path
    name = '.'.join(mods + [LEAF_NAMES.get((collection, leaf), leaf)])
    rules = self.deploy_rules if deploy and self.deploy_rules is not None else self.rules
    for pattern, repl in rules:
      name = re.sub(pattern, repl, name)
    return name

  def ignored(self, key: str) -> bool:
    return any(re.search(p, key) for p in self.ignore)


@dataclasses.dataclass(frozen=True)
class MindSporeRules:
  """One MindSpore naming scheme of a model.

  MindSpore names parameters by cell path like PyTorch and differs only in BatchNorm leaves
  (``gamma``/``beta``/``moving_mean``/``moving_variance``), so ``rules`` are :class:`TorchRules`
  that spell the MindSpore model file's cell paths.

  Attributes:
    scheme: name of the MindSpore code that writes such checkpoints (``'mindcv'``, ``'model_zoo'``).
    rules: the cell-path rules.
    source: where that code is (repository, version, file).
  """
  scheme: str
  rules: TorchRules
  source: str = ''


def blocks_index(prefix: str, torch_prefix: str) -> tuple[str, Callable[[re.Match], str]]:
  """Rule turning ``{prefix}_3_1`` into ``{torch_prefix}.3.1`` (flax names cannot hold dots)."""
  return (rf'(^|\.){prefix}((?:_\d+)+)(?=\.)',
          lambda m: m.group(1) + torch_prefix + m.group(2).replace('_', '.'))


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What the registry knows about a model besides its builder.

  Attributes:
    name: registry name, e.g. ``ghostnet_100``.
    family: model file it lives in.
    builder: ``(**module_fields) -> nn.Module``.
    input_size: default (square) training/eval resolution.
    crop_pct, interpolation, mean, std: eval preprocessing (timm conventions).
    paper, paper_url: where the architecture comes from.
    top1: published ImageNet-1k top-1 (%), ``top1_source`` says where it was published.
    reference: the PyTorch reference used by the parity tests (``timm:<name>``, ``torchvision:<name>``).
    torch_rules: names of its PyTorch checkpoints (None: no PyTorch mapping).
    mindspore_rules: its MindSpore naming schemes, tried in order.
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
  torch_rules: Optional[TorchRules] = None
  mindspore_rules: tuple[MindSporeRules, ...] = ()


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(family: str, **cfg: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
  """Decorator registering a builder function under its own name; ``cfg``: :class:`ModelSpec` fields."""
  def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    name = fn.__name__
    if name in _REGISTRY:
      raise ValueError(f'model {name!r} is registered twice')
    _REGISTRY[name] = ModelSpec(name=name, family=family, builder=fn, **cfg)
    return fn
  return deco


def list_models(pattern: str = '*') -> list[str]:
  """Registered model names matching a shell-style ``pattern``, sorted."""
  return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_spec(name: str) -> ModelSpec:
  """The :class:`ModelSpec` of ``name``; unknown names raise a ``ValueError`` with suggestions."""
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
