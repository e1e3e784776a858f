"""Checkpoints with orbax ``CheckpointManager``: the train state plus the input position.

Async saves; the last ``keep`` checkpoints plus the ``keep_best`` best by eval top-1 are kept.
Restores build their target from the *current* mesh, so a checkpoint written on 8 devices (or a
GPU/TPU) restores on 1 CPU device, or onto another mesh.

:func:`restore_variables` reads only the weights of a run (a run directory, its ``checkpoints``
directory or one step's directory), with no config or mesh; importing this module registers it
with :func:`ghostnets_jax.convert.load_checkpoint`, so an orbax run directory loads like a
PyTorch or MindSpore file.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Optional, Union

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from ghostnets_jax.convert import CheckpointFormat, register_checkpoint_format
from ghostnets_jax.train.state import TrainState

BEST_METRIC = 'top1'


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
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=('state', 'data'))

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

  def restore(self, which: Union[str, int], abstract: TrainState, shardings: TrainState
              ) -> tuple[int, TrainState, dict]:
    """Restores ``(step, state, data_state)`` placed with ``shardings``."""
    step = self.resolve(which)
    out = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract(abstract, shardings)),
        data=ocp.args.JsonRestore()))
    logging.info('restored step %d from %s', step, self.directory)
    return step, out['state'], out['data']

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
  tree = ocp.StandardCheckpointer().restore(os.path.abspath(state_dir))
  if use_ema and not tree.get('ema'):
    raise ValueError(f'{what} has no EMA weights (its run had ema.decay = 0); set use_ema False.')
  src = tree['ema'] if use_ema else tree
  return {'params': src['params'], 'batch_stats': src.get('batch_stats', {})}


def _load_run(name: str, path: str, *, step: Union[str, int] = 'latest', use_ema: bool = False,
              **unused) -> dict:
  del name, unused   # the run's own model: module overrides are already in its shapes
  return restore_variables(path, step, use_ema)


register_checkpoint_format(CheckpointFormat('orbax-run', is_run_checkpoint, _load_run))
