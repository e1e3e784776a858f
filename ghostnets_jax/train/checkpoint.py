"""Checkpoints with orbax ``CheckpointManager``: the train state plus the input position.

Async saves; the last ``keep`` checkpoints plus the ``keep_best`` best by eval top-1 are kept.
Every save records a fingerprint of the state (two wrapping uint32 sums per leaf, computed on
device) in its JSON item; a restore recomputes it, so a truncated, emptied, garbage or bit-flipped
checkpoint is detected (orbax alone restores a flipped bit silently). Before orbax reads a step,
every stored array is read once synchronously: a damaged file raises there, never inside orbax's
concurrent restore, whose error path can deadlock (tensorstore cancels a pending read while holding
the GIL that the read's completion callback waits for). ``restore('latest')`` then
names the bad step and why, moves it aside to ``<step>.corrupt`` (nothing is deleted) and restores
the newest good one; an interrupted save is never taken as complete (orbax commits a step by
renaming its temporary directory).
Restores build their target from the *current* mesh, so a checkpoint written on 8 devices (or a
GPU/TPU) restores on 1 CPU device, or onto another mesh.

The directory may be local or in a bucket (``gs://``): every file operation goes through
``etils.epath`` (:mod:`ghostnets_jax.storage`). Reading a run without the training code (its
weights, its model) is :mod:`ghostnets_jax.convert.orbax_run`.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Optional, Union

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from ghostnets_jax import storage
from ghostnets_jax.convert.orbax_run import (BEST_METRIC, CHECKSUM_KEY, CorruptCheckpointError,
                                             check_arrays_readable, check_fingerprint,
                                             fingerprint, is_run_checkpoint, pick_step,
                                             restore_variables, short_error)
from ghostnets_jax.train.state import TrainState

__all__ = ['BEST_METRIC', 'Checkpointer', 'CorruptCheckpointError', 'check_arrays_readable',
           'fingerprint', 'is_run_checkpoint', 'restore_variables']


def _metric(metrics: dict) -> float:
  """The ranking metric; checkpoints saved without an eval (metrics ``{}``) rank last."""
  return float(metrics.get(BEST_METRIC, float('-inf')))


def _abstract(target: Any, shardings: Any) -> Any:
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), target, shardings)


class Checkpointer:
  """``save(step, state, data_state, metrics)`` / ``restore(which, abstract, shardings)``."""

  def __init__(self, directory: str, *, keep: int = 3, keep_best: int = 1,
               async_save: bool = True, read_only: bool = False):
    self.directory = storage.path(directory)
    policies = [ocm.LatestN(n=keep)]
    if keep_best:
      policies.append(ocm.BestN(get_metric_fn=_metric, reverse=False, n=keep_best,
                                keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocm.AnyPreservationPolicy(policies),
        best_fn=_metric, best_mode='max',
        enable_async_checkpointing=async_save, read_only=read_only,
        create=not read_only)
    self._set_aside_unlisted_damage(read_only)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=('state', 'data'))

  def _set_aside_unlisted_damage(self, read_only: bool) -> None:
    """Steps whose small JSON files (orbax's metadata, our metrics) do not parse stop orbax from
    even listing the directory: move them to ``<step>.corrupt`` when another step is readable;
    raise, changing nothing, when none is (or read-only)."""
    if not self.directory.is_dir():
      return
    bad, good = [], 0
    steps = [d for d in self.directory.iterdir() if d.name.isdigit()]
    for d in sorted(steps, key=lambda d: int(d.name)):
      reason = None
      for f in ('_CHECKPOINT_METADATA', 'metrics/metrics'):
        path = d / f
        if path.exists():
          text = path.read_bytes()
          try:
            json.loads(text)
          except ValueError as e:
            reason = f'{f} is not valid JSON ({e}; {len(text)} bytes)'
            break
      if reason:
        bad.append((d.name, reason))
      else:
        good += 1
    if not bad:
      return
    names = '; '.join(f'checkpoint {self.step_dir(int(d))} cannot be read ({r})' for d, r in bad)
    if read_only or not good:
      raise CorruptCheckpointError(f'{names}. No step was changed or deleted: move the damaged '
                                   'ones away to use the others' if good else
                                   f'no readable checkpoint in {self.directory}; every step is '
                                   f'damaged (none was changed or deleted): {names}')
    for d, r in bad:
      self._set_aside(int(d), f'cannot be read ({r})')

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def _metrics(self, step: int) -> Optional[dict]:
    for info in self.manager._checkpoints:  # pylint: disable=protected-access
      if info.step == step:
        return info.metrics
    return None

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state: TrainState, data_state: dict,
           metrics: Optional[dict[str, float]] = None, force: bool = True) -> bool:
    data_state = {**data_state, CHECKSUM_KEY: fingerprint(state)}
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=ocp.args.JsonSave(data_state))
    return self.manager.save(step, args=args, metrics=metrics or {}, force=force)

  def resolve(self, which: Union[str, int]) -> int:
    """'latest', 'best' or a step number -> an existing step (clear error otherwise)."""
    return pick_step(self.directory, which,
                     {s: self._metrics(s) or {} for s in self.all_steps()})

  def step_dir(self, step: int):
    return self.directory / str(step)

  def _set_aside(self, step: int, why: str) -> None:
    """Renames a damaged step directory to ``<step>.corrupt`` (orbax ignores it; kept, not deleted)."""
    src = self.step_dir(step)
    dst = src.parent / f'{src.name}.corrupt'
    if dst.exists():
      dst = src.parent / f'{dst.name}-{int(time.time())}'
    logging.warning('checkpoint %s %s; moved it to %s (kept for inspection)', src, why, dst)
    src.rename(dst)

  def _restore_step(self, step: int, abstract: TrainState, shardings: TrainState
                    ) -> tuple[TrainState, dict]:
    """Restores one step and checks it against its fingerprint; CorruptCheckpointError if not."""
    what = self.step_dir(step)
    try:
      check_arrays_readable(what / 'state')
      out = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(_abstract(abstract, shardings)),
          data=ocp.args.JsonRestore()))
      state, data = out['state'], dict(out['data'])
    except Exception as e:   # orbax/tensorstore/json raise many types for a damaged directory
      raise CorruptCheckpointError(f'checkpoint {what} cannot be read ({short_error(e)})') from e
    check_fingerprint(str(what), state, data.pop(CHECKSUM_KEY, None))
    return state, data

  def restore(self, which: Union[str, int], abstract: TrainState, shardings: TrainState,
              quarantine: bool = False) -> tuple[int, TrainState, dict]:
    """Restores ``(step, state, data_state)`` placed with ``shardings``.

    ``'latest'`` skips damaged checkpoints, newest first, with a warning naming each and why, and
    restores the newest good one; with ``quarantine`` (training, which will save those steps
    again) the damaged ones are renamed to ``<step>.corrupt``. Nothing is deleted. A damaged
    'best' or explicit step, or no good checkpoint at all, raises CorruptCheckpointError.
    """
    step = self.resolve(which)
    if which != 'latest':
      state, data = self._restore_step(step, abstract, shardings)
      logging.info('restored step %d from %s', step, self.directory)
      return step, state, data
    errors = []
    for s in sorted(self.all_steps(), reverse=True):
      try:
        state, data = self._restore_step(s, abstract, shardings)
      except CorruptCheckpointError as e:
        logging.warning('%s; trying the previous checkpoint', e)
        errors.append((s, str(e)))
        continue
      if errors and quarantine:
        for bad, _ in errors:
          self._set_aside(bad, 'is damaged')
        self.manager.reload()
      if errors:
        logging.warning('restored step %d, the newest good checkpoint in %s (skipped damaged '
                        'steps %s)', s, self.directory, [b for b, _ in errors])
      else:
        logging.info('restored step %d from %s', s, self.directory)
      return s, state, data
    raise CorruptCheckpointError(
        f'no readable checkpoint in {self.directory}; every step is damaged (none was changed '
        'or deleted): ' + '; '.join(m for _, m in errors) + '. Move them away to start afresh '
        'or point --workdir elsewhere.')

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
