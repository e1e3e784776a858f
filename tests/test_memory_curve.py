"""The training-step memory curve on a small model: XLA's figures of the compiled step at two batch
sizes, PyTorch's step in a child process, and the fitted lines."""
import json

import pytest

from benchmarks import memory_curve as mc

MIB = 2 ** 20


def test_memory_curve_of_two_batches(tmp_path):
  out = tmp_path / 'curve.json'
  rows = mc.main(['--models', 'ghostnet_050', '--size', '32', '--batches', '4,2', '--recipe', 'plain',
                  '--no-torch', '--json', str(out)])
  small, large = rows
  assert (small['batch'], large['batch']) == (2, 4)
  # the activations (and their gradients) grow with the batch
  assert large['xla_temp_mb'] > small['xla_temp_mb'] > 0
  # what is not temporary (arguments + outputs - donated) grows by exactly the two extra examples'
  # inputs: a 32x32x3 float32 image, an int32 label and an int32 image id each
  extra_inputs = 2 * (32 * 32 * 3 * 4 + 4 + 4)
  grown = ((large['xla_peak_mb'] - large['xla_temp_mb']) - (small['xla_peak_mb'] - small['xla_temp_mb']))
  assert grown * MIB == pytest.approx(extra_inputs, abs=64)

  saved = json.loads(out.read_text())
  assert saved['rows'] == rows
  fits = {f['measure']: f for f in saved['fits'] if f['model'] == 'ghostnet_050'}
  assert set(fits) == {'xla_peak_mb', 'xla_temp_mb'}
  for key, fit in fits.items():   # through two points the line is the one through both
    slope = (large[key] - small[key]) / (4 - 2)
    assert fit['mb_per_image'] == pytest.approx(slope, rel=1e-9, abs=1e-9)
    assert fit['intercept_mb'] == pytest.approx(small[key] - 2 * slope, rel=1e-9, abs=1e-9)


def test_pytorch_step_memory_comes_from_a_fresh_child_process():
  # the child builds the reference model and runs one full-recipe step; its resident memory grows
  # at least by the 2x3x32x32 float32 input batch that step allocates
  a = mc.parse_args(['--size', '32', '--batches', '2'])
  assert mc.torch_memory('ghostnet_050', 2, a) * MIB >= 2 * 3 * 32 * 32 * 4


def test_fit_line_is_least_squares():
  # y = 3x + 1 with residuals +1, -2, +1 (they sum to zero and are orthogonal to x - mean)
  slope, icpt = mc.fit_line([1, 2, 3], [5, 5, 11])
  assert (slope, icpt) == pytest.approx((3.0, 1.0))
  with pytest.raises(ValueError, match='two different batch sizes'):
    mc.fit_line([8, 8], [1.0, 2.0])


@pytest.mark.parametrize('batches', ['8,x', '0,8', ','])
def test_bad_batches_are_named(batches, capsys):
  with pytest.raises(SystemExit):
    mc.parse_args(['--batches', batches])
  assert '--batches' in capsys.readouterr().err
