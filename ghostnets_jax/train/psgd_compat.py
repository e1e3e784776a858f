"""Imports ``psgd_jax`` (PSGD-Kron, https://github.com/evanatyourservice/psgd_jax) on current optax.

``psgd-jax`` 0.2.9 imports the module ``optax._src.clipping``, which optax 0.2.8 moved to
``optax.transforms._clipping``; the Kron optimizer never uses it. Where the old path is missing,
this registers the moved module under it (nothing else changes) before importing ``psgd_jax``.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

OLD, NEW = 'optax._src.clipping', 'optax.transforms._clipping'


def import_psgd() -> ModuleType:
  """``psgd_jax.kron`` (raises ImportError naming the install command when it is missing)."""
  import optax._src
  try:
    importlib.import_module(OLD)
  except ImportError:
    moved = importlib.import_module(NEW)
    sys.modules[OLD] = moved
    optax._src.clipping = moved
  try:
    return importlib.import_module('psgd_jax.kron')
  except ImportError as e:
    raise ImportError(f"optim.name='psgd_kron' needs psgd-jax: pip install psgd-jax==0.2.9 ({e})") from e
