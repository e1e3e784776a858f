"""Weight conversion between Flax variables and PyTorch / MindSpore checkpoints.

The converters load on first use (``ghostnets_jax.convert.from_torch`` imports
``ghostnets_jax.convert.pytorch``), so importing this package pulls in none of their
dependencies (orbax, torch, MindSpore).

  formats     load_checkpoint: any supported checkpoint file or run directory, by its kind
  pytorch     from_torch / to_torch: PyTorch state dicts (timm, torchvision, official repos)
  mindspore   from_mindspore / to_mindspore: MindSpore .ckpt files
  orbax_run   load_run / restore_variables: ghostnets_jax training runs
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    'formats': ('CheckpointFormat', 'load_checkpoint', 'register_checkpoint_format'),
    'orbax_run': ('CorruptCheckpointError', 'RunError', 'load_run', 'restore_variables', 'run_info'),
    'mindspore': ('from_mindspore', 'get_mindspore_rules', 'load_mindspore_checkpoint',
                  'mindspore_schemes', 'to_mindspore'),
    'pytorch': ('CheckpointMismatchError', 'from_torch', 'get_torch_rules', 'load_torch_checkpoint',
                'normalize_state_dict', 'to_torch'),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
  if name in _MODULE_OF:
    return getattr(importlib.import_module(f'{__name__}.{_MODULE_OF[name]}'), name)
  if name in _EXPORTS:
    return importlib.import_module(f'{__name__}.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_MODULE_OF) | set(_EXPORTS))
