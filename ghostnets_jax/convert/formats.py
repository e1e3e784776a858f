"""One entry point for checkpoint files of any supported kind: :func:`load_checkpoint`.

Formats are tried in order; each says whether it recognises a path and how to load it:

* PyTorch ``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors`` -> :func:`load_torch_checkpoint`
* MindSpore ``.ckpt`` -> :func:`load_mindspore_checkpoint`
* a directory: a ghostnets_jax training run (its workdir, ``checkpoints`` directory or one
  step) -> :func:`~ghostnets_jax.convert.orbax_run.restore_variables`

Paths may be local or ``gs://``. Other formats can be added with :func:`register_checkpoint_format`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from ghostnets_jax import storage
from ghostnets_jax.convert.mindspore import load_mindspore_checkpoint
from ghostnets_jax.convert.orbax_run import is_run_checkpoint, load_run_variables
from ghostnets_jax.convert.pytorch import load_torch_checkpoint


@dataclasses.dataclass(frozen=True)
class CheckpointFormat:
  """``matches(path)`` recognises a checkpoint; ``load(name, path, **kwargs)`` returns Flax variables."""
  name: str
  matches: Callable[[str], bool]
  load: Callable[..., dict]


CHECKPOINT_FORMATS: list[CheckpointFormat] = [
    CheckpointFormat('pytorch', lambda p: p.endswith(('.pth', '.pt', '.bin', '.safetensors')),
                     load_torch_checkpoint),
    CheckpointFormat('mindspore', lambda p: p.endswith('.ckpt'), load_mindspore_checkpoint),
    CheckpointFormat('orbax-run', is_run_checkpoint, load_run_variables),
]


def register_checkpoint_format(fmt: CheckpointFormat) -> CheckpointFormat:
  """Adds a format, tried before the built-in ones."""
  CHECKPOINT_FORMATS.insert(0, fmt)
  return fmt


def load_checkpoint(name: str, path: str, **kwargs: Any) -> dict:
  """Flax variables of model ``name`` from the checkpoint at ``path`` (format by file type).

  ``kwargs`` go to the format's loader (``num_classes=...``, module overrides).
  """
  if not storage.path(path).exists():
    raise FileNotFoundError(f'checkpoint not found: {path}')
  for fmt in CHECKPOINT_FORMATS:
    if fmt.matches(path):
      return fmt.load(name, path, **kwargs)
  if storage.path(path).is_dir():
    raise ValueError(f'{path} is a directory with no saved step of a ghostnets_jax run (a run '
                     'workdir, its checkpoints/ directory or one step holding state/); pass one of '
                     'those, or a .pth/.safetensors/.ckpt file.')
  raise ValueError(f'unrecognised checkpoint {path}: expected a PyTorch .pth/.pt/.bin/.safetensors '
                   'file, a MindSpore .ckpt file or the directory of a ghostnets_jax run.')
