"""ONNX -> MNN, RepGhost's deploy route for ARM CPUs, with MNN's own converter from PyPI.

The RepGhost paper (Chen et al., 2022; https://github.com/ChengpengChen/RepGhost) measures
mobile latency by exporting ONNX and converting it to MNN (https://github.com/alibaba/MNN).
The ``MNN`` wheel (``pip install MNN``, 3.6) carries both the converter (the ``_tools``
extension behind its ``mnnconvert`` command) and the runtime (``MNN.nn`` modules). The
converter is called directly, in a child process: its ``mnnconvert`` Python wrapper
(``MNN.tools``) tries to ``pip install`` a logging SDK and send usage logs over the network,
and a converter crash must not take the exporting process with it.

The deploy-form ONNX of :func:`~ghostnets_jax.export.export_onnx` (dynamic batch, NCHW or NHWC)
converts without rewriting: one ``.mnn`` file serves every batch size.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import Callable, Optional, Sequence, Union

import flax.linen as nn
import numpy as np
import onnx

from ghostnets_jax.export import mnn_runtime, pipeline
from ghostnets_jax.export.mnn_runtime import import_mnn as _mnn, load
from ghostnets_jax.export.onnx import ExportError, Verification, compare, jax_reference, sample_images
from ghostnets_jax.export.rewrites import op_types
from ghostnets_jax.registry import get_spec

# Runs MNN's converter (argv as for its ``mnnconvert`` command) without its Python wrapper.
_CONVERT = 'import sys, _tools; _tools.mnnconvert(sys.argv)'


def convert(onnx_path: str, out_path: str) -> str:
  """Converts ``onnx_path`` to ``out_path`` (MNN, float32) with MNN's converter; returns its log.

  Raises :class:`ExportError` when the converter fails or writes nothing.
  """
  if not os.path.isfile(onnx_path):
    raise FileNotFoundError(f'ONNX file not found: {onnx_path}')
  _mnn()
  if os.path.exists(out_path):
    os.remove(out_path)
  cmd = [sys.executable, '-c', _CONVERT, '-f', 'ONNX', '--modelFile', onnx_path, '--MNNModel', out_path,
         '--bizCode', 'ghostnets_jax']
  proc = subprocess.run(cmd, capture_output=True, text=True)
  log = (proc.stdout + proc.stderr).strip()
  # the converter reports errors in its log and still exits 0
  if proc.returncode != 0 or 'Converted Success' not in log or not os.path.isfile(out_path):
    tail = log.splitlines()[-15:]
    raise ExportError(f'MNN converter failed on {onnx_path} (exit {proc.returncode}):\n  ' + '\n  '.join(tail))
  return log


def run_in_child(path: str, inputs: Sequence[np.ndarray], threads: int = 1,
                 precision: str = 'High') -> list[np.ndarray]:
  """MNN's outputs for each of ``inputs`` (in the graph's layout), computed by :func:`load` in a
  fresh child process.

  The checks use this rather than :func:`load` in their own process: in long test sessions whose
  process had also loaded TensorFlow, PyTorch, MindSpore and onnxruntime, MNN 3.6.1 occasionally
  returned wrong logits (2 checks in about 30), which never happened in a fresh process; a
  runtime crash then also stays in the child. Raises :class:`ExportError` when the child fails.
  """
  _mnn()
  with tempfile.TemporaryDirectory() as work:
    files, outs = [], []
    for i, x in enumerate(inputs):
      src, dst = os.path.join(work, f'in{i}.npy'), os.path.join(work, f'out{i}.npy')
      np.save(src, np.ascontiguousarray(x, np.float32))
      files += [src, dst]
      outs.append(dst)
    proc = subprocess.run([sys.executable, mnn_runtime.__file__, path, str(threads), precision, *files],
                          capture_output=True, text=True)
    if proc.returncode != 0:
      tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
      raise ExportError(f'MNN inference of {path} failed (exit {proc.returncode}):\n  ' + '\n  '.join(tail))
    return [np.load(f) for f in outs]


def verify_mnn(path: str, reference: Callable[[np.ndarray], np.ndarray], input_shape: Sequence[int], *,
               layout: str = 'NCHW', batch_sizes: Sequence[int] = (1, 4), atol: float = 1e-4) -> Verification:
  """MNN inference of ``path`` vs ``reference`` (NHWC images -> logits) at each batch size.

  As :func:`~ghostnets_jax.export.verify_onnx`: one reference call at the largest batch, the
  smaller batches on its leading images. MNN runs in a child process (:func:`run_in_child`).
  Raises :class:`ExportError` on a mismatch, and when the reference logits are all below
  ``atol`` (the comparison would then prove nothing).
  """
  x = sample_images(max(batch_sizes), input_shape)
  ref = np.asarray(reference(x))
  scale = float(np.abs(ref).max()) if ref.size else 0.0
  if not scale > atol:
    raise ExportError(f'the JAX logits are all below {atol:g} (max {scale:.3g}): a comparison at that '
                      'tolerance would prove nothing; export with trained weights or a lower atol')

  feeds = [x[:b].transpose(0, 3, 1, 2) if layout == 'NCHW' else x[:b] for b in batch_sizes]
  outputs = dict(zip(batch_sizes, run_in_child(path, feeds)))
  try:
    diffs = {b: compare('MNN', lambda _: outputs[b], ref[:b], x[:b], atol) for b in batch_sizes}
  except ExportError as e:
    # say which side moved: MNN once more, and the reference once more
    again = dict(zip(batch_sizes, run_in_child(path, feeds)))
    mnn_moved = max(float(np.abs(again[b] - outputs[b]).max()) for b in batch_sizes)
    ref_moved = float(np.abs(np.asarray(reference(x)) - ref).max())
    raise ExportError(f'{e} (rerun: MNN moved by {mnn_moved:.3g}, the reference by {ref_moved:.3g})') from None
  return Verification(diffs, atol, scale)


def export_mnn_file(name: Optional[str], out: str, *, checkpoint: Optional[str] = None,
                    deploy: bool = True, layout: str = 'NCHW', num_classes: Optional[int] = None,
                    input_size: Optional[int] = None, slice_as_conv: bool = False,
                    step: Union[str, int] = 'latest', weights: str = 'auto',
                    batch_sizes: Sequence[int] = (1, 4), atol: float = 1e-4,
                    model_and_variables: Optional[tuple[nn.Module, dict]] = None,
                    reference: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                    onnx_model: Optional[onnx.ModelProto] = None) -> pipeline.ExportReport:
  """Exports model ``name`` to ``out`` (MNN): ONNX (as :func:`~ghostnets_jax.export.pipeline.export_onnx_file`),
  MNN's converter, then MNN inference vs JAX at each of ``batch_sizes`` within ``atol``.

  Written atomically: a failed conversion or check leaves nothing behind and keeps an existing
  ``out``. ``onnx_model`` reuses an export of the same model and variables; the other arguments
  are :func:`~ghostnets_jax.export.pipeline.export_onnx_file`'s.
  """
  _mnn()
  if name is not None:
    get_spec(name)
  pipeline.check_output_path(out)
  src = pipeline._source(name, checkpoint, num_classes, input_size, step, weights, model_and_variables)
  proto = onnx_model or pipeline._onnx_of(src, layout=layout, deploy=deploy, slice_as_conv=slice_as_conv)
  size = src.input_size
  with pipeline.atomic_output(out) as tmp, tempfile.TemporaryDirectory() as work:
    onnx_path = os.path.join(work, 'model.onnx')
    onnx.save(proto, onnx_path)
    convert(onnx_path, tmp)
    verification = verify_mnn(tmp, reference or jax_reference(src.model, src.variables),
                              (size, size, getattr(src.model, 'in_chans', 3)), layout=layout,
                              batch_sizes=batch_sizes, atol=atol)
  return pipeline.ExportReport(out, src.name, op_types(proto),
                               [f'MNN {_mnn().version()} (converted from ONNX, run by MNN.nn): {verification}'],
                               [out])


__all__ = ['convert', 'export_mnn_file', 'load', 'run_in_child', 'verify_mnn']
