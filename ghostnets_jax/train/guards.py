"""Run guards polled by the training loop: a stop signal (preemption) and non-finite steps.

:class:`StopSignal` turns SIGTERM / SIGINT into a clean stop after the current step, agreed on by
every process; :class:`NonFiniteGuard` checks the steps' non-finite flags at log steps and before
every save, then stops naming the first bad step or counts skipped steps
(``config.on_nonfinite``).
"""
from __future__ import annotations

import logging
import signal

import jax
import jax.numpy as jnp
import numpy as np

from ghostnets_jax.errors import ConfigError
from ghostnets_jax.train import mesh as mesh_lib
from ghostnets_jax.train.checkpoint import Checkpointer


class StopSignal:
  """SIGTERM / SIGINT -> finish the current step, checkpoint, exit cleanly (preemption).

  :meth:`requested` is polled at every step. With several processes (a pod, a cluster) the
  signal may reach only some of them; every process then contributes its flag to a tiny
  collective each step (a max over a process-sharded array, dispatched asynchronously) and acts
  on the result of the previous step's one, which is ready by then. All processes therefore see
  the same answer at the same step and save that step together, and the host never waits for the
  step in flight.
  """

  def __init__(self, mesh=None):
    self._flag = False
    self._previous = {}
    self._mesh = mesh
    self._vote_fn = None
    self._pending = None
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:   # not the main thread: no handler (e.g. a library caller's thread)
        pass

  def _handle(self, signum, frame) -> None:
    logging.warning('signal %d: checkpointing after this step, then stopping', signum)
    self._flag = True

  def requested(self) -> bool:
    if jax.process_count() == 1 or self._mesh is None:
      return self._flag
    if self._vote_fn is None:
      self._vote_fn = jax.jit(jnp.max, out_shardings=mesh_lib.replicated(self._mesh))
    local = np.full((jax.local_device_count(),), int(self._flag), np.int32)
    vote = jax.make_array_from_process_local_data(mesh_lib.batch_sharding(self._mesh), local)
    previous, self._pending = self._pending, self._vote_fn(vote)
    return previous is not None and bool(previous)

  def restore(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class NonFiniteGuard:
  """Collects each step's non-finite flag (on device, no sync) and checks them at log steps and
  before every save. The step itself never applies a non-finite update; ``stop`` then raises
  naming the first bad step, ``skip`` counts the skipped steps (kept in the checkpoint)."""

  def __init__(self, mode: str, skipped: int = 0):
    if mode not in ('stop', 'skip'):
      raise ConfigError(f"config.on_nonfinite must be 'stop' or 'skip', got {mode!r}")
    self.mode, self.skipped, self._pending = mode, skipped, []

  def add(self, step: int, metrics) -> None:
    self._pending.append((step, metrics.nonfinite.total))

  def check(self, checkpointer: Checkpointer) -> None:
    flags = jax.device_get([f for _, f in self._pending])
    bad = [s for (s, _), f in zip(self._pending, flags) if f > 0]
    self._pending = []
    if not bad:
      return
    if self.mode == 'stop':
      checkpointer.wait()
      last_good = checkpointer.latest_step()
      raise FloatingPointError(
          f'non-finite loss or gradient at step {bad[0]} (steps {bad}); training stopped, the '
          f'last good checkpoint (step {last_good}) is kept and nothing after it was saved. Lower '
          'optim.lr or enable optim.grad_clip_norm and rerun the same command to resume from '
          "it, or set --config.on_nonfinite=skip to skip such steps.")
    self.skipped += len(bad)
    logging.warning('skipped %d step(s) with a non-finite loss or gradient: %s (%d in this run)',
                    len(bad), bad, self.skipped)
