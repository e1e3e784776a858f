"""Trace-time lowering for export: standard ONNX-friendly primitives instead of fast CPU kernels.

Some layers compute the same numbers in two ways: one fast for training (shift-and-add depthwise
convolutions on CPU, reshape-mean pooling, repeat-based upsampling) and one that exporters map
to single standard operators (grouped ``Conv``, ``AveragePool``, ``HardSigmoid``, ``Gather``
with constant indices, a global pool over NCHW axes). :func:`export_lowering` selects the second
while a function is traced; it is read at trace time, like
:func:`~ghostnets_jax.layers.depthwise_impl`.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

from ghostnets_jax.layers.conv import conv_kernels

_exporting = contextvars.ContextVar('ghostnets_jax_export_lowering', default=False)


@contextlib.contextmanager
def export_lowering() -> Iterator[None]:
  """Traces layers with export-friendly primitives (XLA's native convolutions included)."""
  token = _exporting.set(True)
  try:
    with conv_kernels('native'):
      yield
  finally:
    _exporting.reset(token)


def exporting() -> bool:
  """True while tracing inside :func:`export_lowering`."""
  return _exporting.get()
