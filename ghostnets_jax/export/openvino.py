"""OpenVINO inference (CPU plugin) of an ONNX file, such as the export of
:func:`~ghostnets_jax.export.export_onnx`: OpenVINO reads ONNX directly, with no conversion step.

Optional: ``pip install openvino==2026.4.1``. On processors with bfloat16 arithmetic
(AVX512-BF16, AMX) OpenVINO's CPU plugin computes in bfloat16 by default; :func:`load` asks for
float32 (``INFERENCE_PRECISION_HINT``) unless told otherwise, so its logits match the other
runtimes' and its speed compares with theirs.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Union

import numpy as np

REQUIREMENT = 'openvino==2026.4.1'


def import_openvino() -> Any:
  try:
    import openvino
  except ImportError as e:
    raise ImportError(f'the OpenVINO runtime needs the openvino package: pip install {REQUIREMENT}') from e
  return openvino


def load(model: Union[str, Any], threads: int = 1, precision: str = 'f32') -> Callable[[np.ndarray], np.ndarray]:
  """``model`` (an ONNX path or ``onnx.ModelProto``) compiled for OpenVINO's CPU plugin, as a
  function of numpy images in the graph's own layout -> logits (float32 numpy).

  ``threads``: ``INFERENCE_NUM_THREADS`` (one stream, ``PERFORMANCE_HINT=LATENCY``);
  ``precision``: ``INFERENCE_PRECISION_HINT`` ('f32', or 'bf16' / 'f16' where the CPU has them).
  The graph keeps its dynamic batch: one compiled model serves every batch size.
  """
  ov = import_openvino()
  core = ov.Core()
  if isinstance(model, str):
    net = core.read_model(model)
  else:
    import onnx
    with tempfile.TemporaryDirectory() as d:
      path = os.path.join(d, 'model.onnx')
      onnx.save(model, path)
      net = core.read_model(path)
  config = {'INFERENCE_PRECISION_HINT': precision, 'INFERENCE_NUM_THREADS': int(threads),
            'PERFORMANCE_HINT': 'LATENCY'}
  request = core.compile_model(net, 'CPU', config).create_infer_request()

  def run(x: np.ndarray) -> np.ndarray:
    request.infer([np.ascontiguousarray(x, np.float32)], share_inputs=True)
    return np.array(request.get_output_tensor(0).data, np.float32)
  return run
