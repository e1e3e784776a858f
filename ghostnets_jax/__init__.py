"""ghostnets_jax: the Ghost family of efficient CNNs in JAX/Flax.

Public API::

  ghostnets_jax.list_models(pattern='*')
  ghostnets_jax.create_model(name, num_classes=1000, **overrides)
  ghostnets_jax.model_info(name)
  ghostnets_jax.reparameterize(model, variables)
  ghostnets_jax.convert.from_torch(name, state_dict)
  ghostnets_jax.load_run(workdir, step='latest', weights='auto')   # (model, variables) of a run

Importing the package loads only the models (jax, flax, numpy). ``convert``, ``load_run`` and
``model_info`` are imported on first use, so the base install (``pip install ghostnets_jax``,
no extras) never imports TensorFlow, PyTorch or the training stack.
"""
from __future__ import annotations

import importlib
from typing import Any

from ghostnets_jax import models  # noqa: F401  (importing the model files registers every model)
from ghostnets_jax.layers.fusion import fold_bn, merge_branches, pad_kernel
from ghostnets_jax.registry import create_model, get_spec, list_models
from ghostnets_jax.reparam import reparameterize

# The one version source: pyproject.toml reads it (``version = {attr = ...}``), and so does
# importlib.metadata.version('ghostnets_jax') once installed.
__version__ = '0.1.0'

# name -> (module, attribute or None for the module itself), imported on first access.
_LAZY = {
    'convert': ('ghostnets_jax.convert', None),
    'load_run': ('ghostnets_jax.convert', 'load_run'),
    'model_info': ('ghostnets_jax.complexity', 'model_info'),
}


def __getattr__(name: str) -> Any:
  if name not in _LAZY:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  module, attr = _LAZY[name]
  value = importlib.import_module(module)
  if attr is not None:
    value = getattr(value, attr)
  globals()[name] = value   # later accesses skip __getattr__
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_LAZY))


__all__ = ['convert', 'create_model', 'fold_bn', 'get_spec', 'list_models', 'load_run',
           'merge_branches', 'model_info', 'pad_kernel', 'reparameterize']
