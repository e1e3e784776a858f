"""benchmarks/onnx_peers.py and the deploy runtimes of ghostnets_jax.timing: the graphs it times are
the files it writes, both compute the PyTorch reference's logits, and OpenVINO (optional) is named
with its install command when missing."""
import collections
import importlib.util
import json
import os
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

from ghostnets_jax import timing
from tests.export_helpers import graph, images


def _bench_module():
  path = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'benchmarks', 'onnx_peers.py')
  spec = importlib.util.spec_from_file_location('bench_onnx_peers', path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_onnx_peers_times_the_files_it_writes(tmp_path):
  import onnxruntime as ort
  import torch

  from ghostnets_jax import reference_torch
  mod = _bench_module()
  out = tmp_path / 'peers.json'
  (row,) = mod.main(['--models', 'ghostnet_050', '--batch', '2', '--size', '64', '--runtimes', 'onnxruntime',
                     '--min-time', '0', '--repeats', '1', '--save-dir', str(tmp_path), '--json', str(out),
                     '--host-memory', 'default'])
  assert row['onnxruntime_ratio'] == pytest.approx(row['onnxruntime_ours_img_s'] / row['onnxruntime_timm_img_s'])
  assert row['max_rel_diff'] < 1e-5 and row['max_abs_logit'] > 0.1
  saved = json.loads(out.read_text())
  assert saved['rows'] == [row] and saved['machine']['onnxruntime'] == ort.__version__
  ref, _ = reference_torch.random_pair('ghostnet_050')
  x = timing.images(2, 64).transpose(0, 3, 1, 2).copy()
  with torch.inference_mode():
    want = reference_torch.deploy(ref)(torch.from_numpy(x)).numpy()
  for name in ('ours', 'timm'):
    proto = onnx.load(str(tmp_path / f'ghostnet_050_{name}.onnx'))
    info = saved['graphs']['ghostnet_050'][name]
    assert info['ops'] == dict(collections.Counter(n.op_type for n in proto.graph.node))
    assert info['nodes'] == len(proto.graph.node)
    session = ort.InferenceSession(proto.SerializeToString(), providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
  with pytest.raises(SystemExit, match='unknown'):
    mod.main(['--models', 'ghostnet_050', '--runtimes', 'tflite', '--json', ''])
  with pytest.raises(SystemExit, match='not timm'):
    mod.main(['--models', 'g_ghost_regnetx_002', '--size', '64', '--runtimes', 'onnxruntime', '--json', ''])


def _small_graph() -> onnx.ModelProto:
  n = helper.make_node
  return graph([n('Conv', ['x', 'w'], ['c'], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                n('HardSigmoid', ['c'], ['h'], alpha=1 / 6, beta=0.5),
                n('ReduceMean', ['h', 'axes'], ['y'], keepdims=0)],
               ['N', 3, 8, 8], ['N', 4], {'w': images(4, 3, 3, 3), 'axes': np.array([2, 3], np.int64)})


def test_openvino_missing_names_its_install(monkeypatch):
  monkeypatch.setitem(sys.modules, 'openvino', None)  # as if not installed
  with pytest.raises(ImportError, match=r'pip install openvino==2026\.4\.1'):
    timing.runtime_runners(_small_graph(), ['openvino'], 1)


def test_openvino_runs_in_float32_like_onnxruntime():
  runners = timing.runtime_runners(_small_graph(), ['onnxruntime', 'openvino'], 1)
  x = images(3, 3, 8, 8)
  want = runners['onnxruntime'](x)
  np.testing.assert_allclose(runners['openvino'](x), want, atol=1e-6)  # bfloat16 would miss by ~1e-3
  np.testing.assert_allclose(runners['openvino'](x[:1]), want[:1], atol=1e-6)  # dynamic batch
