"""The oneDNN CPU convolutions (ghostnets_jax.layers.onednn) against XLA's own convolution
(``lax.conv_general_dilated``) and PyTorch's ``F.conv2d``: outputs and gradients to the second
order over strides, dilations, groups, depthwise multipliers and odd sizes; where 'auto' picks
them and where it does not; the messages when they cannot be used. No timing here: speed is
measured by benchmarks/conv_peers.py and benchmarks/train_step.py."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ghostnets_jax.layers import Conv2d, conv_kernels, depthwise_impl
from ghostnets_jax.layers import onednn
from ghostnets_jax.layers.conv import (depthwise_conv2d_parts, resolve_depthwise_impl,
                                       resolve_grouped_impl, resolve_pointwise_impl)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def native(x, kernel, strides, padding, dilation, groups):
  return jax.lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=dilation,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                      feature_group_count=groups)


def close(got, want, tol=1e-5):
  """Equal up to float32 rounding of sums taken in another order: relative to the largest value."""
  got, want = np.asarray(got), np.asarray(want)
  np.testing.assert_allclose(got, want, rtol=tol, atol=tol * float(np.abs(want).max()))


def test_the_extension_builds_here():
  # CI installs oneDNN (requirements.txt) and has a compiler: the fast path must be the one tested.
  assert onednn.available(), onednn.status()
  assert jax.device_count() == 1
  assert (resolve_depthwise_impl(), resolve_grouped_impl(), resolve_pointwise_impl()) == ('onednn',) * 3


# (n, h, w, cin, cout, kernel, strides, padding, dilation, groups)
CASES = [
    (2, 9, 11, 8, 6, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
    (2, 9, 11, 8, 12, (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 4),        # grouped, strided
    (2, 10, 9, 8, 16, (5, 5), (2, 2), ((2, 2), (2, 2)), (1, 1), 8),        # depthwise x2
    (1, 10, 10, 6, 6, (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2), 6),        # dilated depthwise
    (1, 15, 13, 3, 5, (7, 7), (2, 2), ((3, 3), (3, 3)), (1, 1), 1),        # a 7x7 stem
    (3, 7, 6, 5, 4, (3, 2), (1, 2), ((0, 2), (1, 0)), (1, 1), 1),          # asymmetric everything
    (2, 8, 8, 16, 24, (1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1), 1),        # strided 1x1
    (1, 4, 4, 96, 96, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 2),        # RegNet's wide groups
]


@pytest.mark.parametrize('n,h,w,cin,cout,k,strides,padding,dilation,groups', CASES)
def test_matches_xla_and_torch_in_values_and_gradients(n, h, w, cin, cout, k, strides, padding,
                                                       dilation, groups):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((n, h, w, cin), np.float32))
  kernel = jnp.asarray(rng.standard_normal((*k, cin // groups, cout), np.float32))
  args = (strides, padding, dilation, groups)
  y = jax.jit(lambda x, k: onednn.conv2d(x, k, *args))(x, kernel)
  ref = native(x, kernel, *args)
  close(y, ref)
  # PyTorch takes symmetric padding: pad the input first.
  tx = torch.from_numpy(np.pad(np.asarray(x), ((0, 0), *padding, (0, 0))).transpose(0, 3, 1, 2).copy())
  tk = torch.from_numpy(np.asarray(kernel).transpose(3, 2, 0, 1).copy())
  ty = F.conv2d(tx, tk, stride=strides, dilation=dilation, groups=groups).numpy().transpose(0, 2, 3, 1)
  close(y, ty)

  cot = jnp.asarray(rng.standard_normal(y.shape, np.float32))

  def loss(conv):
    return lambda x, k: jnp.sum(jnp.sin(conv(x, k, *args)) * cot)
  got = jax.jit(jax.grad(loss(onednn.conv2d), (0, 1)))(x, kernel)
  want = jax.grad(loss(native), (0, 1))(x, kernel)
  for a, b in zip(got, want):
    close(a, b, 5e-5)

  # Second order: the gradient of a function of the input gradient (the handlers' own VJPs).
  def second(conv):
    return lambda x, k: jnp.sum(jax.grad(loss(conv), 0)(x, k) ** 2)
  got = jax.jit(jax.grad(second(onednn.conv2d), (0, 1)))(x, kernel)
  want = jax.grad(second(native), (0, 1))(x, kernel)
  for a, b in zip(got, want):
    close(a, b, 5e-4)


def test_conv2d_layer_and_channel_parts_take_onednn_and_match_native():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((2, 12, 12, 12), np.float32))
  for conv in (Conv2d(12, 3, 2, groups=12), Conv2d(24, 3, groups=3), Conv2d(8, 1), Conv2d(8, 5, 2)):
    v = conv.init(jax.random.key(0), x)
    assert 'ghostnets_onednn_conv' in str(jax.make_jaxpr(conv.apply)(v, x))
    with conv_kernels('native'):
      ref = conv.apply(v, x)
    close(conv.apply(v, x), ref)
  # A C-Ghost module's depthwise conv over (intrinsic, ghost) parts: one call per part.
  parts = (x[..., :5], x[..., 5:])
  kernel = jnp.asarray(rng.standard_normal((3, 3, 1, 12), np.float32))
  got = depthwise_conv2d_parts(parts, kernel, 1, ((1, 1), (1, 1)), impl='onednn')
  close(got, native(x, kernel, (1, 1), ((1, 1), (1, 1)), (1, 1), 12))


def test_vmap_over_an_extra_axis():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((3, 2, 6, 6, 4), np.float32))
  kernel = jnp.asarray(rng.standard_normal((3, 3, 4, 5), np.float32))
  args = ((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
  got = jax.vmap(lambda x: onednn.conv2d(x, kernel, *args))(x)
  want = jax.vmap(lambda x: native(x, kernel, *args))(x)
  close(got, want)


def test_other_dtypes_take_the_xla_forms():
  x = jnp.ones((1, 6, 6, 4), jnp.bfloat16)
  conv = Conv2d(4, 3, groups=4, dtype=jnp.bfloat16)
  v = conv.init(jax.random.key(0), x)
  with depthwise_impl('onednn'):
    jaxpr = str(jax.make_jaxpr(conv.apply)(v, x))
  assert 'ffi_call' not in jaxpr and 'conv_general_dilated' not in jaxpr   # shift-and-add
  with pytest.raises(ValueError, match='float32'):
    onednn.conv2d(x, jnp.ones((3, 3, 1, 4), jnp.bfloat16), (1, 1), ((1, 1), (1, 1)), groups=4)


def run_python(code, **env):
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu', **env}, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


def test_auto_keeps_xla_forms_without_onednn_and_explicit_onednn_says_why(tmp_path):
  code = '''
import jax, jax.numpy as jnp
from ghostnets_jax.layers import Conv2d, grouped_impl, onednn
from ghostnets_jax.layers.conv import resolve_grouped_impl, resolve_depthwise_impl
print(onednn.available(), resolve_grouped_impl(), resolve_depthwise_impl())
x = jnp.ones((1, 6, 6, 4)); conv = Conv2d(4, 3); v = conv.init(jax.random.key(0), x)
print(float(conv.apply(v, x).sum()) != 0)
try:
  with grouped_impl('onednn'):
    conv.apply(v, x)
except RuntimeError as e:
  print('ERROR', e)
'''
  off = run_python(code, GHOSTNETS_JAX_ONEDNN='0').splitlines()
  assert off[:2] == ['False split shift_add', 'True']
  assert off[2].startswith("ERROR conv impl 'onednn' is not available: turned off by GHOSTNETS_JAX_ONEDNN=0")
  missing = run_python(code, GHOSTNETS_JAX_ONEDNN_ROOT=str(tmp_path)).splitlines()
  assert missing[0] == 'False split shift_add'
  assert 'pip install onednn-cpu-gomp' in missing[2]


def test_builds_into_a_fresh_cache_once_and_reuses_it(tmp_path):
  code = 'from ghostnets_jax.layers import onednn; print(onednn.available(), onednn.status())'
  first = run_python(code, GHOSTNETS_JAX_CACHE=str(tmp_path))
  built = sorted(p.name for p in tmp_path.iterdir())
  assert first.startswith('True built') and len(built) == 1 and built[0].endswith('.so'), (first, built)
  mtime = (tmp_path / built[0]).stat().st_mtime_ns
  assert run_python(code, GHOSTNETS_JAX_CACHE=str(tmp_path)).startswith('True built')
  assert sorted(p.name for p in tmp_path.iterdir()) == built
  assert (tmp_path / built[0]).stat().st_mtime_ns == mtime


def test_several_cpu_devices_keep_the_xla_forms():
  out = run_python('import jax\nfrom ghostnets_jax.layers.conv import resolve_grouped_impl\n'
                   'print(jax.device_count(), resolve_grouped_impl())',
                   XLA_FLAGS='--xla_force_host_platform_device_count=4')
  assert out.split() == ['4', 'split']
