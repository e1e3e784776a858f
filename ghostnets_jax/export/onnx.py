"""ONNX export of any registered model, and its verification with onnxruntime.

:func:`export_onnx` traces ``model.apply`` with jax2onnx under
:func:`~ghostnets_jax.layers.export_lowering` (grouped ``Conv`` for depthwise layers,
``AveragePool``, ``HardSigmoid``, constant-index ``Gather`` for nearest upsampling), with a
symbolic batch dimension, then cleans the graph with onnxruntime's provider-independent
optimisations (:func:`~ghostnets_jax.export.rewrites.ort_optimize`): biases folded into ``Conv``
and the NHWC<->NCHW transposes jax2onnx puts around every convolution cancelled, leaving an NCHW
graph; the upsampling gathers become one ``Resize`` each
(:func:`~ghostnets_jax.export.rewrites.nearest_gathers_to_resize`).
:func:`verify_onnx` checks a file with ``onnx.checker`` and compares onnxruntime with JAX.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import flax.linen as nn
import jax
import numpy as np
import onnx

from ghostnets_jax.errors import UserError
from ghostnets_jax.export import rewrites
from ghostnets_jax.layers import export_lowering
from ghostnets_jax.reparam import reparameterize

LAYOUTS = ('NCHW', 'NHWC')
INPUT_NAME, OUTPUT_NAME = 'images', 'logits'
OPSET = 23


class ExportError(UserError, RuntimeError):
  """An export could not be produced or did not pass its checks."""


@functools.lru_cache(maxsize=None)
def _to_onnx() -> Callable[..., onnx.ModelProto]:
  """jax2onnx's ``to_onnx`` with only the plugin trees our models use loaded.

  By default jax2onnx imports every plugin module on first use, including example models that
  build and compile networks at import time (about a minute on CPU); the lax/numpy/nn and
  flax.linen plugins are all that Flax CNNs need.
  """
  import pathlib

  from jax2onnx import to_onnx
  from jax2onnx.plugins import plugin_system
  root = pathlib.Path(plugin_system.__file__).parent
  try:
    for sub in ('jax', 'flax/linen'):
      plugin_system._import_tree(root / sub, 'jax2onnx.plugins.' + sub.replace('/', '.'))
    plugin_system._already_imported_plugins = True
  except AttributeError:  # another jax2onnx version: let it import everything itself
    pass
  return to_onnx


def _metadata(model: onnx.ModelProto, props: Mapping[str, Any]) -> None:
  del model.metadata_props[:]
  for k, v in props.items():
    model.metadata_props.add(key=str(k), value=str(v))


def export_onnx(model: nn.Module, variables: Mapping[str, Any], input_size: Union[int, Sequence[int]],
                *, layout: str = 'NCHW', deploy: bool = True, slice_as_conv: bool = False,
                opset: int = OPSET, metadata: Optional[Mapping[str, Any]] = None) -> onnx.ModelProto:
  """Exports ``model`` with ``variables`` (eval mode) to an ONNX model with a dynamic batch.

  Args:
    model, variables: a Flax model of the registry and its ``{'params', 'batch_stats'}``.
    input_size: image height and width (an int for square inputs).
    layout: 'NCHW' (PyTorch convention, the default) or 'NHWC' for the graph input.
    deploy: export the re-parameterized form (:func:`ghostnets_jax.reparameterize`).
    slice_as_conv: rewrite channel slices as 1x1 convolutions (for Ascend; see
      :func:`~ghostnets_jax.export.rewrites.channel_slices_to_conv`).
    metadata: stored as ``metadata_props`` (model name, preprocessing, ...).

  Returns an ``onnx.ModelProto`` with input ``images`` (``batch`` symbolic) and output ``logits``.
  """
  if layout not in LAYOUTS:
    raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
  h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
  if deploy and not getattr(model, 'deploy', False):
    model, variables = reparameterize(model, variables)
  fn = functools.partial(model.apply, variables, train=False)
  with export_lowering():
    proto = _to_onnx()(fn, [('batch', h, w, getattr(model, 'in_chans', 3))], opset=opset,
                       inputs_as_nchw=[0] if layout == 'NCHW' else None,
                       input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                       model_name=type(model).__name__)
  proto.producer_name, proto.producer_version = 'ghostnets_jax', _version()
  _metadata(proto, {'layout': layout, 'deploy': deploy, **(metadata or {})})
  proto = rewrites.nearest_gathers_to_resize(rewrites.ort_optimize(rewrites.infer_shapes(proto)))
  if slice_as_conv:
    proto = rewrites.channel_slices_to_conv(proto)
  return proto


def _version() -> str:
  from ghostnets_jax import __version__
  return __version__


def jax_reference(model: nn.Module, variables: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
  """The jitted eval-mode forward on NHWC numpy images, returning numpy logits."""
  fn = jax.jit(functools.partial(model.apply, train=False))
  return lambda x: np.asarray(fn(variables, x))


@dataclasses.dataclass(frozen=True)
class Verification:
  """Max abs difference runtime vs JAX per batch size, and the tolerance it passed."""
  max_abs_diff: dict[int, float]
  atol: float
  max_abs_reference: float = 0.0

  def __str__(self) -> str:
    diffs = ', '.join(f'batch {b}: {d:.2e}' for b, d in self.max_abs_diff.items())
    return f'max |runtime - JAX| {diffs} (< {self.atol:g}; max |JAX| {self.max_abs_reference:.3g})'


def sample_images(batch: int, input_shape: Sequence[int], seed: int = 0) -> np.ndarray:
  """Deterministic NHWC float32 test images of shape ``(batch, *input_shape)``."""
  return np.random.RandomState(seed).randn(batch, *input_shape).astype(np.float32)


def compare(name: str, run: Callable[[np.ndarray], np.ndarray], reference: np.ndarray,
            x: np.ndarray, atol: float) -> float:
  """Runs ``run`` on NHWC ``x``; raises :class:`ExportError` unless it matches ``reference``."""
  y = np.asarray(run(x))
  if y.shape != reference.shape:
    raise ExportError(f'{name}: output shape {y.shape} differs from JAX {reference.shape}')
  diff = float(np.max(np.abs(y - reference))) if y.size else 0.0
  if not np.isfinite(diff) or diff >= atol:
    raise ExportError(f'{name}: max |output - JAX| = {diff:.3g} exceeds {atol:g} at batch {x.shape[0]}')
  return diff


def _check_layout(model_dims: Sequence[Any], input_shape: Sequence[int], layout: str) -> None:
  """ExportError unless the graph's input after the batch is ``input_shape`` (NHWC) in ``layout``."""
  h, w, ch = input_shape
  feeds = {'NCHW': [ch, h, w], 'NHWC': [h, w, ch]}
  if layout not in feeds:
    raise ExportError(f'layout must be NCHW or NHWC, got {layout!r}')
  dims = [d if isinstance(d, int) else None for d in model_dims]
  if len(dims) != 3 or any(d is not None and d != f for d, f in zip(dims, feeds[layout])):
    fits = [k for k, f in feeds.items() if all(d is None or d == x for d, x in zip(dims, f))]
    raise ExportError(f'the ONNX graph takes input {list(model_dims)} after the batch, but '
                      f'layout={layout!r} feeds {feeds[layout]}' + (
                          f'; pass layout={fits[0]!r}' if len(dims) == 3 and fits else
                          f'; pass the input_shape (height, width, 3) it was exported at'))


def verify_onnx(onnx_model: Union[str, onnx.ModelProto], reference: Callable[[np.ndarray], np.ndarray],
                input_shape: Sequence[int], *, layout: str = 'NCHW', batch_sizes: Sequence[int] = (1, 4),
                atol: float = 1e-4) -> Verification:
  """``onnx.checker`` (full check) and onnxruntime vs ``reference`` at each batch size.

  ``reference`` maps NHWC images to logits (e.g. :func:`jax_reference`); it is called once, at
  the largest batch, and the smaller batches use the leading images, so the same file is also
  checked for batch consistency. Raises :class:`ExportError` on any failure.
  """
  import onnxruntime as ort
  try:
    onnx.checker.check_model(onnx_model, full_check=True)
  except onnx.checker.ValidationError as e:
    raise ExportError(f'onnx.checker rejected the model: {e}') from e
  source = onnx_model if isinstance(onnx_model, str) else onnx_model.SerializeToString()
  session = ort.InferenceSession(source, providers=['CPUExecutionProvider'])
  feed = session.get_inputs()[0].name
  _check_layout(session.get_inputs()[0].shape[1:], input_shape, layout)
  x = sample_images(max(batch_sizes), input_shape)
  ref = np.asarray(reference(x))

  def run(xb):
    return session.run(None, {feed: xb.transpose(0, 3, 1, 2) if layout == 'NCHW' else xb})[0]

  diffs = {b: compare('onnxruntime', run, ref[:b], x[:b], atol) for b in batch_sizes}
  return Verification(diffs, atol, float(np.abs(ref).max()))
