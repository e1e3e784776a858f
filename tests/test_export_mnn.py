"""MNN export (RepGhost's deploy route): MNN's converter from PyPI on the deploy-form ONNX of one
model per architecture, then MNN inference against JAX at batch 1 and 4 from one file."""
import os

import numpy as np
import onnx
import pytest

from ghostnets_jax.export import ExportError
from ghostnets_jax.export import mnn
from tests.export_helpers import ALL_WIDTHS, export_cases, exported, images, jax_logits
from tests.helpers import SMALL

# one model per architecture: the extra widths of ALL_WIDTHS only matter to re-parameterization,
# which the ONNX tests cover; the MNN file is converted from that same graph
CASES = [n for n in export_cases()
         if n.endswith('_100') or not any(n.startswith(p.rstrip('*')) for p in ALL_WIDTHS)]


def _mnn_file(name, tmp_path, layout='NCHW'):
  src, out = str(tmp_path / f'{name}.onnx'), str(tmp_path / f'{name}.mnn')
  onnx.save(exported(name, layout), src)
  mnn.convert(src, out)
  return out


@pytest.mark.parametrize('name', [pytest.param(n, marks=pytest.mark.xdist_group(f'export_{n}')) for n in CASES])
def test_mnn_inference_matches_jax(name, tmp_path):
  result = mnn.verify_mnn(_mnn_file(name, tmp_path), jax_logits(name), (SMALL, SMALL, 3), batch_sizes=(1, 4))
  assert set(result.max_abs_diff) == {1, 4} and max(result.max_abs_diff.values()) < 1e-4
  assert result.max_abs_reference > 0.1  # logits of a real size, so 1e-4 means something


@pytest.mark.xdist_group('export_nhwc')
def test_nhwc_graph_and_failed_checks(tmp_path):
  name = 'ghostnet_100'
  path = _mnn_file(name, tmp_path, 'NHWC')
  x = images(3, SMALL, SMALL, 3, seed=3)
  np.testing.assert_allclose(mnn.run_in_child(path, [x])[0], jax_logits(name)(x), atol=1e-4)
  # the checks can fail: a shifted reference, and a reference too small to compare against
  with pytest.raises(ExportError, match='exceeds'):
    mnn.verify_mnn(path, lambda x: jax_logits(name)(x) + 1e-3, (SMALL, SMALL, 3), layout='NHWC')
  with pytest.raises(ExportError, match='prove nothing'):
    mnn.verify_mnn(path, lambda x: 1e-6 * jax_logits(name)(x), (SMALL, SMALL, 3), layout='NHWC')


def test_converter_failure_is_reported(tmp_path):
  bad = tmp_path / 'bad.onnx'
  bad.write_bytes(b'not an onnx file')
  with pytest.raises(ExportError, match='MNN converter failed') as e:
    mnn.convert(str(bad), str(tmp_path / 'bad.mnn'))
  assert 'not onnx model' in str(e.value)
  with pytest.raises(FileNotFoundError, match='ONNX file not found'):
    mnn.convert(str(tmp_path / 'missing.onnx'), str(tmp_path / 'x.mnn'))
  assert sorted(os.listdir(tmp_path)) == ['bad.onnx']
  # the runtime's failure on a file that is not MNN's stays in the child and is reported
  with pytest.raises(ExportError, match='MNN inference of .*bad.onnx failed'):
    mnn.run_in_child(str(bad), [np.zeros((1, 3, 8, 8), np.float32)])
