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

:func:`restore_variables` reads only the weights of a run (a run directory, its ``checkpoints``
directory or one step's directory), with no config or mesh; importing this module registers it
with :func:`ghostnets_jax.convert.load_checkpoint`, so an orbax run directory loads like a
PyTorch or MindSpore file.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from orbax.checkpoint import checkpoint_managers as ocm

from ghostnets_jax.convert import CheckpointFormat, register_checkpoint_format
from ghostnets_jax.train.state import TrainState

BEST_METRIC = 'top1'
CHECKSUM_KEY = '_checksum'   # in the JSON item: the state's fingerprint at save time


class CorruptCheckpointError(RuntimeError):
  """A checkpoint that cannot be read, or whose contents differ from what was saved."""


def _leaf_fingerprint(x: jax.Array) -> jax.Array:
  bits = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}.get(x.dtype.itemsize)
  u = (jax.lax.bitcast_convert_type(x, bits) if bits and x.dtype != jnp.bool_ else x)
  u = u.astype(jnp.uint32).reshape(-1)
  w = jnp.arange(u.size, dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1)   # position-weighted
  return jnp.stack([jnp.sum(u, dtype=jnp.uint32), jnp.sum(u * w, dtype=jnp.uint32)])


def fingerprint(tree: Any) -> dict[str, list[int]]:
  """``{leaf path: [sum, weighted sum]}`` of the bits of every leaf (wrapping uint32), on device:
  any changed bit or moved block of a leaf changes it."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  if not leaves:
    return {}
  paths, arrays = zip(*leaves)
  out_sharding = None
  sh = getattr(arrays[0], 'sharding', None)
  if isinstance(sh, jax.sharding.NamedSharding):   # replicated: readable on every process
    out_sharding = jax.sharding.NamedSharding(sh.mesh, jax.sharding.PartitionSpec())
  fn = jax.jit(lambda xs: jnp.stack([_leaf_fingerprint(x) for x in xs]), out_shardings=out_sharding)
  sums = np.asarray(fn(list(arrays)))
  return {jax.tree_util.keystr(p): [int(a), int(b)] for p, (a, b) in zip(paths, sums)}


def check_arrays_readable(state_dir: str) -> int:
  """Opens and reads every array of an orbax OCDBT item directory, one at a time, with blocking
  tensorstore calls (no asyncio, no Python callbacks); returns how many. Raises what tensorstore
  raises for a truncated, emptied or garbled file. A directory with no OCDBT manifest is left to
  orbax (0)."""
  if not os.path.exists(os.path.join(state_dir, 'manifest.ocdbt')):
    return 0
  base = state_dir if '://' in state_dir else f'file://{os.path.abspath(state_dir)}/'
  context = ts.Context()
  kvstore = ts.KvStore.open({'driver': 'ocdbt', 'base': base}, context=context).result()
  drivers = {'.zarray': 'zarr', 'zarr.json': 'zarr3'}
  n = 0
  for key in sorted(k.decode() for k in kvstore.list().result()):
    path, _, name = key.rpartition('/')
    if name in drivers:
      kv = {'driver': 'ocdbt', 'base': base, 'path': path + '/'}
      array = ts.open({'driver': drivers[name], 'kvstore': kv}, read=True, context=context).result()
      array.read().result()
      n += 1
  return n


def _short(e: Exception) -> str:
  return ' '.join(f'{type(e).__name__}: {e}'.split())[:300]


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
    self.directory = os.path.abspath(directory)
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
    if not os.path.isdir(self.directory):
      return
    bad, good = [], 0
    for d in sorted((d for d in os.listdir(self.directory) if d.isdigit()), key=int):
      reason = None
      for f in ('_CHECKPOINT_METADATA', os.path.join('metrics', 'metrics')):
        path = os.path.join(self.directory, d, f)
        if os.path.exists(path):
          try:
            with open(path) as fh:
              json.load(fh)
          except ValueError as e:
            reason = f'{f} is not valid JSON ({e}; {os.path.getsize(path)} bytes)'
            break
      if reason:
        bad.append((d, reason))
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

  def best_step(self) -> Optional[int]:
    steps = [s for s in self.manager.all_steps() if BEST_METRIC in (self._metrics(s) or {})]
    return max(steps, key=lambda s: self._metrics(s)[BEST_METRIC]) if steps else None

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
    steps = self.all_steps()
    if not steps:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    if which == 'latest':
      return self.latest_step()
    if which == 'best':
      best = self.best_step()
      if best is None:
        raise FileNotFoundError(f'no checkpoint in {self.directory} has eval metrics (run '
                                'with --mode=train_and_eval to track the best); steps: '
                                f'{steps}')
      return best
    step = int(which)
    if step not in steps:
      raise FileNotFoundError(f'no checkpoint for step {step} in {self.directory}; steps: {steps}')
    return step

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _set_aside(self, step: int, why: str) -> None:
    """Renames a damaged step directory to ``<step>.corrupt`` (orbax ignores it; kept, not deleted)."""
    src = self.step_dir(step)
    dst = f'{src}.corrupt'
    if os.path.exists(dst):
      dst = f'{dst}-{int(time.time())}'
    logging.warning('checkpoint %s %s; moved it to %s (kept for inspection)', src, why, dst)
    os.rename(src, dst)

  def _restore_step(self, step: int, abstract: TrainState, shardings: TrainState
                    ) -> tuple[TrainState, dict]:
    """Restores one step and checks it against its fingerprint; CorruptCheckpointError if not."""
    what = self.step_dir(step)
    try:
      check_arrays_readable(os.path.join(what, 'state'))
      out = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(_abstract(abstract, shardings)),
          data=ocp.args.JsonRestore()))
      state, data = out['state'], dict(out['data'])
    except Exception as e:   # orbax/tensorstore/json raise many types for a damaged directory
      raise CorruptCheckpointError(f'checkpoint {what} cannot be read ({_short(e)})') from e
    want = data.pop(CHECKSUM_KEY, None)
    if want is not None:
      got = fingerprint(state)
      bad = [k for k in want if got.get(k) != want[k]] or sorted(set(got) ^ set(want))
      if bad:
        raise CorruptCheckpointError(
            f'checkpoint {what} does not match the fingerprint written when it was saved: '
            f'{len(bad)} arrays differ, first {bad[0]} (the files were changed or damaged '
            'after the save)')
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


def _is_step_dir(path: str) -> bool:
  return os.path.isdir(os.path.join(path, 'state'))


def is_run_checkpoint(path: str) -> bool:
  """A run directory (holding ``checkpoints/``), a ``checkpoints`` directory with saved steps,
  or one saved step (holding ``state/``)."""
  if not os.path.isdir(path):
    return False
  if os.path.isdir(os.path.join(path, 'checkpoints')) or _is_step_dir(path):
    return True
  return any(d.isdigit() and _is_step_dir(os.path.join(path, d)) for d in os.listdir(path))


def restore_variables(path: str, which: Union[str, int] = 'latest', use_ema: bool = False) -> dict:
  """``{'params', 'batch_stats'}`` (host numpy) of a run's checkpoint, without its config.

  ``path``: the run's workdir, its ``checkpoints`` directory (``which``: 'latest', 'best' or a
  step), or one step's directory (``which`` ignored).
  """
  if _is_step_dir(path):
    state_dir, what = os.path.join(path, 'state'), path
  else:
    ckpt_dir = os.path.join(path, 'checkpoints')
    ckpt = Checkpointer(ckpt_dir if os.path.isdir(ckpt_dir) else path, read_only=True,
                        async_save=False)
    step = ckpt.resolve(which)
    state_dir, what = os.path.join(ckpt.directory, str(step), 'state'), f'{path} step {step}'
    ckpt.close()
  try:
    check_arrays_readable(state_dir)
    tree = ocp.StandardCheckpointer().restore(os.path.abspath(state_dir))
  except Exception as e:   # orbax/tensorstore raise many types for a damaged directory
    raise CorruptCheckpointError(f'checkpoint {what} cannot be read ({_short(e)})') from e
  if use_ema and not tree.get('ema'):
    raise ValueError(f'{what} has no EMA weights (its run had ema.decay = 0); set use_ema False.')
  src = tree['ema'] if use_ema else tree
  return {'params': src['params'], 'batch_stats': src.get('batch_stats', {})}


def _load_run(name: str, path: str, *, step: Union[str, int] = 'latest', use_ema: bool = False,
              **unused) -> dict:
  del name, unused   # the run's own model: module overrides are already in its shapes
  return restore_variables(path, step, use_ema)


register_checkpoint_format(CheckpointFormat('orbax-run', is_run_checkpoint, _load_run))
