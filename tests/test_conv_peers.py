"""benchmarks/conv_peers.py: our 3x3 convolutions (XLA's form and oneDNN's) beside PyTorch's, on
shrunken shapes."""
import json

import numpy as np
import pytest

from benchmarks import conv_peers


def test_both_sides_compute_the_same_convolution_and_the_ratios_are_theirs(tmp_path):
  out = tmp_path / 'conv.json'
  rows = conv_peers.main(['--families', 'regnet', '--batch', '2', '--scale', '14',
                          '--min-time', '0.01', '--repeats', '1', '--json', str(out),
                          '--host-memory', 'default'])
  assert [(r['groups'], r['stride']) for r in rows] == [(g, s) for *_, g, s in conv_peers.SHAPES['regnet']]
  assert {r['model'] for r in rows} == {'g_ghost_regnetx_032'}
  for r in rows:
    # PyTorch's F.conv2d is the reference: the layer computes the same convolution
    assert r['max_diff'] < 1e-4
    for k in ('split', 'onednn'):
      assert r[f'{k}_fwd_ratio'] == pytest.approx(r['torch_fwd_ms'] / r[f'{k}_fwd_ms'])
      assert r[f'{k}_bwd_ratio'] == pytest.approx(r['torch_bwd_ms'] / r[f'{k}_bwd_ms'])
    assert r['shape'][3] % r['groups'] == 0 and r['shape'][3] // r['groups'] == 48
  assert json.loads(out.read_text())['rows'] == rows


def test_gradients_match_pytorch_autograd():
  import jax.numpy as jnp
  rng = np.random.RandomState(1)
  x = jnp.asarray(rng.randn(2, 9, 9, 8), jnp.float32)
  w = jnp.asarray(rng.randn(3, 3, 4, 8), jnp.float32)
  r = jnp.asarray(rng.randn(2, 5, 5, 8), jnp.float32)
  _, t_bwd = conv_peers.torch_calls(x, w, r, 2, 2)
  tdx, tdw = t_bwd()
  for kernel in ('split', 'onednn'):
    _, j_bwd = conv_peers.jax_calls(x, w, r, 2, 2, kernel)
    dx, dw = j_bwd(x, w)
    np.testing.assert_allclose(np.asarray(dx), tdx.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(dw), tdw.numpy().transpose(2, 3, 1, 0), rtol=1e-4, atol=1e-4)


def test_unknown_family_is_named(capsys):
  with pytest.raises(SystemExit):
    conv_peers.parse_args(['--families', 'regnet,vgg'])
  assert "--families: unknown ['vgg']" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    conv_peers.parse_args(['--kernels', 'split,im2col'])
  assert "--kernels: unknown ['im2col']" in capsys.readouterr().err
