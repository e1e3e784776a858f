"""One entry point for checkpoint files of any supported kind: :func:`load_checkpoint`.

Formats are tried in order; each says whether it recognises a path and how to load it:

* PyTorch ``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors`` -> :func:`load_torch_checkpoint`
* MindSpore ``.ckpt`` -> :func:`load_mindspore_checkpoint`
* a directory: an orbax training checkpoint. Its loader belongs to the training code, which
  registers it with :func:`register_checkpoint_format` (inserted before the built-ins).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

from ghostnets_jax.convert.mindspore import load_mindspore_checkpoint
from ghostnets_jax.convert.pytorch import load_torch_checkpoint


@dataclasses.dataclass(frozen=True)
class CheckpointFormat:
  """``matches(path)`` recognises a checkpoint; ``load(name, path, **kwargs)`` returns Flax variables."""
  name: str
  matches: Callable[[str], bool]
  load: Callable[..., dict]


def _no_orbax_loader(name: str, path: str, **kwargs: Any) -> dict:
  raise NotImplementedError(
      f'{path} is a directory, i.e. an orbax training checkpoint, and no loader for those is '
      'registered: the training code registers one with '
      'ghostnets_jax.convert.register_checkpoint_format. Or pass a .pth/.safetensors/.ckpt file.')


CHECKPOINT_FORMATS: list[CheckpointFormat] = [
    CheckpointFormat('pytorch', lambda p: p.endswith(('.pth', '.pt', '.bin', '.safetensors')),
                     load_torch_checkpoint),
    CheckpointFormat('mindspore', lambda p: p.endswith('.ckpt'), load_mindspore_checkpoint),
    CheckpointFormat('orbax', os.path.isdir, _no_orbax_loader),
]


def register_checkpoint_format(fmt: CheckpointFormat) -> CheckpointFormat:
  """Adds a format, tried before the built-in ones."""
  CHECKPOINT_FORMATS.insert(0, fmt)
  return fmt


def load_checkpoint(name: str, path: str, **kwargs: Any) -> dict:
  """Flax variables of model ``name`` from the checkpoint at ``path`` (format by file type).

  ``kwargs`` go to the format's loader (``num_classes=...``, module overrides).
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f'checkpoint not found: {path}')
  for fmt in CHECKPOINT_FORMATS:
    if fmt.matches(path):
      return fmt.load(name, path, **kwargs)
  raise ValueError(f'unrecognised checkpoint {path}: expected a PyTorch .pth/.pt/.bin/.safetensors '
                   'file, a MindSpore .ckpt file or an orbax checkpoint directory.')
