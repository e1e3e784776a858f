"""The run's metric writer: TensorBoard event files in the workdir, local or remote.

The console gets one line per log step from the trainer itself, so the writer writes events only
(clu's default writer would also log every scalar to the console).

clu's writer writes event files with TensorFlow's own filesystem, whose GCS client always calls
the public endpoint with its own credentials lookup (it cannot reach a Cloud Storage emulator and
does not share gcsfs' settings). For a bucket workdir the events are therefore written to a local
scratch directory and copied to the workdir through ``etils.epath`` at every :meth:`flush` and at
:meth:`close`: real buckets and emulators take the same code path as checkpoints.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Optional

from clu import metric_writers

from ghostnets_jax import storage


class MirroredWriter:
  """A clu ``MetricWriter`` over a local directory whose files are copied to ``dst`` on flush."""

  def __init__(self, dst: storage.PathLike):
    self.dst = storage.path(dst)
    self.logdir = tempfile.mkdtemp(prefix='ghostnets_jax-events-')
    self._writer = events_writer(self.logdir)
    self._copied: dict[str, int] = {}

  def __getattr__(self, name: str) -> Any:   # write_scalars, write_hparams, ...
    return getattr(self._writer, name)

  def _mirror(self) -> None:
    for root, _, names in os.walk(self.logdir):
      for name in names:
        local = os.path.join(root, name)
        rel = os.path.relpath(local, self.logdir)
        size = os.path.getsize(local)
        if self._copied.get(rel) != size:
          target = self.dst / rel
          target.parent.mkdir(parents=True, exist_ok=True)
          storage.upload(local, target)
          self._copied[rel] = size

  def flush(self) -> None:
    self._writer.flush()
    self._mirror()

  def close(self) -> None:
    self._writer.close()
    self._mirror()
    shutil.rmtree(self.logdir, ignore_errors=True)


def events_writer(logdir: Optional[str]) -> metric_writers.MetricWriter:
  """clu's TensorBoard writer on ``logdir`` (asynchronous); with None, a writer that drops
  everything (the processes other than 0)."""
  if logdir is None:
    return metric_writers.MultiWriter([])
  return metric_writers.AsyncMultiWriter([metric_writers.SummaryWriter(logdir)])


def create_writer(workdir: storage.PathLike, events: bool = True):
  """``(writer, logdir)``: the events writer on ``workdir`` (local), or a :class:`MirroredWriter`
  for a bucket workdir, or with ``events=False`` one that writes nothing; ``logdir`` is where
  local tools (the profiler) should write so their files reach the workdir too."""
  if not events:
    return events_writer(None), os.fspath(workdir)
  if storage.is_remote(workdir):
    writer = MirroredWriter(workdir)
    return writer, writer.logdir
  return events_writer(os.fspath(storage.path(workdir))), os.fspath(workdir)
