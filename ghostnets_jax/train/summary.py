"""The run's metric writer: console log + TensorBoard event files in the workdir, local or remote.

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
from typing import Any

from clu import metric_writers

from ghostnets_jax import storage


class MirroredWriter:
  """A clu ``MetricWriter`` over a local directory whose files are copied to ``dst`` on flush."""

  def __init__(self, dst: storage.PathLike, just_logging: bool = False):
    self.dst = storage.path(dst)
    self.logdir = tempfile.mkdtemp(prefix='ghostnets_jax-events-')
    self._writer = metric_writers.create_default_writer(self.logdir, just_logging=just_logging)
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


def create_writer(workdir: storage.PathLike, just_logging: bool = False):
  """``(writer, logdir)``: clu's default writer on ``workdir`` (local), or a
  :class:`MirroredWriter` for a bucket workdir; ``logdir`` is where local tools (the profiler)
  should write so their files reach the workdir too."""
  if storage.is_remote(workdir) and not just_logging:
    writer = MirroredWriter(workdir)
    return writer, writer.logdir
  return (metric_writers.create_default_writer(os.fspath(storage.path(workdir)),
                                               just_logging=just_logging), os.fspath(workdir))
