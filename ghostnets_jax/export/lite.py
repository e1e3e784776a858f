"""Optional route: ONNX -> MindIR with MindSpore Lite's ``converter_lite``.

``converter_lite`` ships in the MindSpore Lite release archives
(``mindspore-lite-<version>-linux-{x64,aarch64}.tar.gz``, ``tools/converter/converter/``; its
libraries in ``tools/converter/lib`` go on ``LD_LIBRARY_PATH``); its Python wheels exist only
for old Pythons. Where it is installed, :func:`convert` prepares the ONNX graph the way the
converter wants it and runs it. The preparation is pure graph rewriting, verified with
onnxruntime (rewritten == original):

1. a fixed batch size (the converter mishandles grouped convolutions with a dynamic batch),
   with all shape arithmetic folded into constants;
2. ``HardSwish`` as ``x * HardSigmoid(x)``;
3. padded ``AveragePool`` as ``Pad`` + VALID ``AveragePool``;
4. (by default) channel slices as 1x1 convolutions, which run faster on Ascend's cube unit.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Optional, Sequence

import numpy as np
import onnx

from ghostnets_jax.export import rewrites
from ghostnets_jax.export.onnx import ExportError, compare, sample_images

CONVERTER_ENV = 'MSLITE_CONVERTER'


def prepare_for_converter_lite(model: onnx.ModelProto, batch_size: int = 1,
                               slice_as_conv: bool = True) -> onnx.ModelProto:
  """The graph rewrites ``converter_lite`` needs (see the module docstring)."""
  m = rewrites.static_graph(model, batch_size)
  m = rewrites.split_padded_avgpool(rewrites.decompose_hardswish(m))
  return rewrites.channel_slices_to_conv(m) if slice_as_conv else m


def run_onnx(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
  """onnxruntime on the model's first input."""
  import onnxruntime as ort
  session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
  return session.run(None, {session.get_inputs()[0].name: x})[0]


def verify_rewrite(original: onnx.ModelProto, rewritten: onnx.ModelProto, batch_size: int,
                   atol: float = 1e-5) -> float:
  """Max abs difference of the two graphs on random inputs (raises :class:`ExportError` over ``atol``)."""
  shape = [d.dim_value for d in rewritten.graph.input[0].type.tensor_type.shape.dim][1:]
  x = sample_images(batch_size, shape)
  return compare('rewritten graph', lambda xb: run_onnx(rewritten, xb), run_onnx(original, x), x, atol)


def find_converter(explicit: Optional[str] = None) -> Optional[str]:
  """``explicit``, else ``$MSLITE_CONVERTER``, else ``converter_lite`` on ``PATH``."""
  for candidate in (explicit, os.environ.get(CONVERTER_ENV)):
    if candidate:
      return candidate if os.path.isfile(candidate) else shutil.which(candidate)
  return shutil.which('converter_lite')


def converter_command(converter: str, onnx_path: str, out_path: str, input_name: str,
                      shape: Sequence[int], extra: Sequence[str] = ()) -> list[str]:
  """The ``converter_lite`` command line for an Ascend-oriented MindIR of ``onnx_path``."""
  stem = out_path[:-len('.mindir')] if out_path.endswith('.mindir') else out_path
  return [converter, '--fmk=ONNX', f'--modelFile={onnx_path}', f'--outputFile={stem}',
          '--saveType=MINDIR', '--optimize=ascend_oriented',
          f'--inputShape={input_name}:{",".join(str(int(d)) for d in shape)}', *extra]


def convert(onnx_path: str, out_path: str, *, batch_size: int = 1, slice_as_conv: bool = True,
            converter: Optional[str] = None, extra_args: Sequence[str] = (),
            prepared_path: Optional[str] = None) -> dict:
  """Prepares ``onnx_path`` for the converter, checks the rewrite, and runs ``converter_lite``.

  The prepared ONNX is written to ``prepared_path`` (default ``<out stem>.lite.onnx``) first, so
  it can be converted by hand where the converter is not installed here. Returns a summary dict.
  Raises :class:`ExportError` when the converter is missing or fails.
  """
  if not os.path.isfile(onnx_path):
    raise FileNotFoundError(f'ONNX file not found: {onnx_path}')
  original = onnx.load(onnx_path)
  prepared = prepare_for_converter_lite(original, batch_size, slice_as_conv)
  diff = verify_rewrite(original, prepared, batch_size)
  stem = out_path[:-len('.mindir')] if out_path.endswith('.mindir') else out_path
  prepared_path = prepared_path or stem + '.lite.onnx'
  onnx.save(prepared, prepared_path)
  inp = prepared.graph.input[0]
  shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
  exe = find_converter(converter)
  cmd = converter_command(exe or 'converter_lite', prepared_path, out_path, inp.name, shape, extra_args)
  summary = dict(prepared=prepared_path, rewrite_max_abs_diff=diff, command=cmd,
                 ops=rewrites.op_types(prepared))
  if exe is None:
    raise ExportError(
        f'converter_lite not found (looked at --converter, ${CONVERTER_ENV} and PATH). It ships in '
        'the MindSpore Lite release archive (mindspore-lite-<version>-linux-x64.tar.gz, '
        'tools/converter/converter/converter_lite; add tools/converter/lib to LD_LIBRARY_PATH). '
        f'The prepared graph is in {prepared_path}; convert it with:\n  ' + ' '.join(cmd))
  proc = subprocess.run(cmd, capture_output=True, text=True)
  produced = stem + '.mindir'
  if proc.returncode != 0 or not os.path.exists(produced):
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    raise ExportError(f'converter_lite failed (exit {proc.returncode}):\n  ' + '\n  '.join(tail))
  if produced != out_path:
    os.replace(produced, out_path)
  return summary
