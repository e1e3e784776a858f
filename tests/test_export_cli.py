"""``python -m ghostnets_jax.export``: real ONNX and MNN exports from a PyTorch checkpoint, bad input,
failed exports that leave nothing behind, and the converter_lite step with a stand-in converter."""
import os
import stat
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from ghostnets_jax.convert import to_torch
from ghostnets_jax.export import mnn, pipeline
from ghostnets_jax.export.__main__ import main
from ghostnets_jax.export.lite import run_onnx
from tests.export_helpers import exported, images, jax_logits
from tests.helpers import SMALL, model_and_variables


@pytest.fixture(scope='module')
def ghostnet_050_pth(tmp_path_factory):
  """A PyTorch checkpoint (timm names) of the cached random ghostnet_050 with 10 classes."""
  _, variables = model_and_variables('ghostnet_050')
  path = tmp_path_factory.mktemp('ckpt') / 'ghostnet_050.pth'
  torch.save({'state_dict': {k: torch.from_numpy(v.copy()) for k, v in to_torch('ghostnet_050', variables).items()}},
             path)
  return str(path)


@pytest.mark.xdist_group('export_cli')
def test_onnx_command_from_pytorch_checkpoint(ghostnet_050_pth, tmp_path, capsys):
  out = tmp_path / 'ghostnet_050.onnx'
  rc = main(['onnx', '--model', 'ghostnet_050', '--checkpoint', ghostnet_050_pth, '--no-deploy',
             '--layout', 'NHWC', '--input-size', str(SMALL), '--out', str(out)])
  assert rc == 0, capsys.readouterr().err
  report = capsys.readouterr().out
  assert 'onnx.checker' in report and 'batch 1' in report and 'batch 4' in report
  assert sorted(os.listdir(tmp_path)) == ['ghostnet_050.onnx']
  assert stat.S_IMODE(os.stat(out).st_mode) & 0o044  # usual permissions, not mkstemp's 0600
  proto = onnx.load(str(out))
  meta = {p.key: p.value for p in proto.metadata_props}
  assert meta['model'] == 'ghostnet_050' and meta['num_classes'] == '10' and meta['deploy'] == 'False'
  assert meta['weights'] == 'ghostnet_050.pth' and meta['layout'] == 'NHWC'
  x = images(3, SMALL, SMALL, 3, seed=5)
  np.testing.assert_allclose(run_onnx(proto, x), jax_logits('ghostnet_050')(x), atol=1e-4)


def _run(args, capsys):
  rc = main(args)
  return rc, capsys.readouterr().err


@pytest.mark.xdist_group('export_cli')
def test_bad_input_gives_clear_errors_and_writes_nothing(ghostnet_050_pth, tmp_path, capsys):
  out = str(tmp_path / 'm.onnx')
  rc, err = _run(['onnx', '--model', 'ghostnet_10', '--out', out], capsys)
  assert rc == 2 and "Unknown model 'ghostnet_10'" in err and 'ghostnet_100' in err
  rc, err = _run(['onnx', '--model', 'ghostnet_100', '--checkpoint', ghostnet_050_pth, '--out', out], capsys)
  assert rc == 2 and "does not match model 'ghostnet_100'" in err and 'mis-shaped' in err
  rc, err = _run(['onnx', '--model', 'ghostnet_100', '--checkpoint', str(tmp_path / 'nope.pth'), '--out', out], capsys)
  assert rc == 2 and 'not found' in err
  rc, err = _run(['onnx', '--model', 'ghostnet_100', '--out', str(tmp_path / 'no' / 'dir' / 'm.onnx')], capsys)
  assert rc == 2 and 'does not exist' in err
  (tmp_path / 'file').write_text('x')
  rc, err = _run(['onnx', '--model', 'ghostnet_100', '--out', str(tmp_path / 'file' / 'm.onnx')], capsys)
  assert rc == 2 and 'is a file, not a directory' in err
  rc, err = _run(['mindspore', '--model', 'ghostnet_100', '--out', str(tmp_path)], capsys)
  assert rc == 2 and 'is a directory' in err
  assert sorted(os.listdir(tmp_path)) == ['file']


def _wrong_graph(*args, **kwargs):
  """A valid ONNX model with the right input and a wrong output: it must fail verification."""
  x = helper.make_tensor_value_info('images', TensorProto.FLOAT, ['batch', 3, SMALL, SMALL])
  y = helper.make_tensor_value_info('logits', TensorProto.FLOAT, ['batch', 3])
  node = helper.make_node('ReduceMean', ['images', 'axes'], ['logits'], keepdims=0)
  axes = onnx.numpy_helper.from_array(np.array([2, 3], np.int64), 'axes')
  return helper.make_model(helper.make_graph([node], 'wrong', [x], [y], [axes]),
                           opset_imports=[helper.make_opsetid('', 23)])


@pytest.mark.parametrize('command', ['onnx', 'mnn'])
def test_failed_export_leaves_no_partial_file_and_keeps_the_old_one(command, tmp_path, capsys, monkeypatch):
  source = pipeline.Source('ghostnet_050', *model_and_variables('ghostnet_050'), SMALL, {}, 'test')
  monkeypatch.setattr(pipeline, 'load_model', lambda name, *a, **k: source)
  monkeypatch.setattr(pipeline, 'export_onnx', _wrong_graph)
  for module in (pipeline, mnn):
    monkeypatch.setattr(module, 'jax_reference', lambda m, v: lambda x: np.ones((len(x), 10), np.float32))
  out = tmp_path / f'model.{command}'
  out.write_bytes(b'the previous export')
  rc, err = _run([command, '--model', 'ghostnet_050', '--input-size', str(SMALL), '--out', str(out)], capsys)
  assert rc == 2 and 'output shape (1, 3) differs from JAX (1, 10)' in err
  assert out.read_bytes() == b'the previous export' and os.listdir(tmp_path) == [f'model.{command}']


@pytest.mark.xdist_group('export_cli')
def test_mnn_command_from_pytorch_checkpoint(ghostnet_050_pth, tmp_path, capsys):
  out = tmp_path / 'ghostnet_050.mnn'
  rc = main(['mnn', '--model', 'ghostnet_050', '--checkpoint', ghostnet_050_pth, '--input-size', str(SMALL),
             '--out', str(out)])
  assert rc == 0, capsys.readouterr().err
  report = capsys.readouterr().out
  assert 'MNN 3.6.1' in report and 'batch 1' in report and 'batch 4' in report
  assert sorted(os.listdir(tmp_path)) == ['ghostnet_050.mnn']
  x = images(3, SMALL, SMALL, 3, seed=6)
  np.testing.assert_allclose(mnn.run_in_child(str(out), [x.transpose(0, 3, 1, 2)])[0], jax_logits('ghostnet_050')(x),
                             atol=1e-4)


def test_atomic_output(tmp_path):
  target = tmp_path / 'a.mindir'
  with pytest.raises(RuntimeError):
    with pipeline.atomic_output(str(target)) as tmp:
      assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith('.mindir')
      open(tmp, 'w').write('partial')
      raise RuntimeError('export failed')
  assert os.listdir(tmp_path) == []
  with pipeline.atomic_output(str(target)) as tmp:
    open(tmp, 'w').write('done')
    os.chmod(tmp, 0o400)  # MindSpore writes read-only files
  assert target.read_text() == 'done' and os.listdir(tmp_path) == ['a.mindir']
  assert stat.S_IMODE(os.stat(target).st_mode) & 0o200


def test_python_m_entry_point():
  proc = subprocess.run([sys.executable, '-m', 'ghostnets_jax.export', 'onnx', '--model', 'nope', '--out', 'x.onnx'],
                        capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert proc.returncode == 2 and "Unknown model 'nope'" in proc.stderr


FAKE_CONVERTER = """#!/bin/sh
# stands in for converter_lite: records its arguments, writes <outputFile>.mindir
echo "$@" > "$(dirname "$0")/args.txt"
for a in "$@"; do case "$a" in --outputFile=*) out="${a#--outputFile=}";; esac; done
[ -n "$FAIL" ] && { echo "unsupported operator" >&2; exit 1; }
echo mindir > "$out.mindir"
"""


@pytest.mark.xdist_group('export_ghostnet_100')
def test_lite_command_runs_converter_where_available(tmp_path, capsys, monkeypatch):
  src = tmp_path / 'ghostnet_100.onnx'
  onnx.save(exported('ghostnet_100'), str(src))
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  fake = bin_dir / 'converter_lite'
  fake.write_text(FAKE_CONVERTER)
  fake.chmod(0o755)
  out = tmp_path / 'ghostnet_100.mindir'
  monkeypatch.delenv('MSLITE_CONVERTER', raising=False)
  monkeypatch.setenv('PATH', str(bin_dir) + os.pathsep + os.environ['PATH'])
  rc, err = _run(['lite', '--onnx', str(src), '--out', str(out), '--batch-size', '1'], capsys)
  assert rc == 0, err
  assert out.read_text() == 'mindir\n'
  args = (bin_dir / 'args.txt').read_text().split()
  prepared = str(tmp_path / 'ghostnet_100.lite.onnx')
  assert args[:2] == ['--fmk=ONNX', f'--modelFile={prepared}']
  assert f'--outputFile={tmp_path / "ghostnet_100"}' in args and '--inputShape=images:1,3,64,64' in args
  assert '--optimize=ascend_oriented' in args
  dims = onnx.load(prepared).graph.input[0].type.tensor_type.shape.dim
  assert [d.dim_value for d in dims] == [1, 3, SMALL, SMALL]
  # a failing converter, and none at all: clear errors, the prepared graph stays for manual use
  monkeypatch.setenv('FAIL', '1')
  rc, err = _run(['lite', '--onnx', str(src), '--out', str(tmp_path / 'x.mindir')], capsys)
  assert rc == 2 and 'converter_lite failed (exit 1)' in err and 'unsupported operator' in err
  monkeypatch.setenv('PATH', str(tmp_path))
  rc, err = _run(['lite', '--onnx', str(src), '--out', str(tmp_path / 'y.mindir')], capsys)
  assert rc == 2 and 'converter_lite not found' in err and '--inputShape=images:1,3,64,64' in err
  assert (tmp_path / 'y.lite.onnx').exists() and not (tmp_path / 'y.mindir').exists()
