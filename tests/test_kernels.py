"""The fast CPU kernels equal the reference kernels: the pointwise (1x1 as a matrix product) and
depthwise (shift-and-add) forms against XLA's native convolution and PyTorch, over shapes,
strides, dtypes and odd sizes, in gradients, and inside a whole model (no timing here: speed is
measured by benchmarks/inference.py)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ghostnets_jax.layers import (Conv2d, GhostModule, GhostModuleV2, conv_kernels, depthwise_conv2d,
                                  depthwise_impl, grouped_conv2d, grouped_impl, pointwise_conv2d,
                                  pointwise_impl, torch_padding)
from ghostnets_jax.layers.conv import depthwise_conv2d_parts
from tests.helpers import FAST_COMPILE, model_and_variables


def torch_conv(x, kernel, stride, padding=0, groups=1):
  out = F.conv2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(kernel.transpose(3, 2, 0, 1)),
                 stride=stride, padding=padding, groups=groups)
  return out.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize('n,hw,cin,cout,stride', [
    (2, (9, 9), 16, 8, 1), (1, (7, 5), 3, 13, 1), (3, (11, 10), 24, 40, 2), (2, (5, 8), 7, 7, (2, 1)),
    (4, (1, 1), 96, 24, 1), (1, (6, 6), 1, 5, 3)])
def test_pointwise_matches_native_and_torch(n, hw, cin, cout, stride):
  rng = np.random.RandomState(0)
  x = rng.randn(n, *hw, cin).astype(np.float32)
  kernel = rng.randn(1, 1, cin, cout).astype(np.float32)
  ref = torch_conv(x, kernel, stride)
  for impl in ('native', 'dot'):
    out = pointwise_conv2d(jnp.asarray(x), jnp.asarray(kernel), stride, impl=impl)
    assert out.shape == ref.shape, impl
    np.testing.assert_allclose(np.asarray(out), ref, atol=2e-5, rtol=1e-5, err_msg=impl)


@pytest.mark.parametrize('dtype,tol', [(jnp.bfloat16, 0.06), (jnp.float16, 5e-3)])
def test_pointwise_low_precision_keeps_dtype_and_agrees(dtype, tol):
  rng = np.random.RandomState(1)
  x = jnp.asarray(rng.randn(2, 9, 7, 20), dtype)
  k = jnp.asarray(rng.randn(1, 1, 20, 12) / 4, dtype)
  a = pointwise_conv2d(x, k, 2, impl='native')
  b = pointwise_conv2d(x, k, 2, impl='dot')
  assert a.dtype == b.dtype == dtype and a.shape == b.shape == (2, 5, 4, 12)
  exact = torch_conv(np.asarray(x, np.float32), np.asarray(k, np.float32), 2)
  for out in (a, b):
    np.testing.assert_allclose(np.asarray(out, np.float32), exact, atol=tol, rtol=tol)


def test_pointwise_gradients_agree():
  rng = np.random.RandomState(2)
  x = jnp.asarray(rng.randn(2, 7, 9, 6), jnp.float32)
  k = jnp.asarray(rng.randn(1, 1, 6, 10), jnp.float32)

  def grads(impl):
    return jax.grad(lambda x, k: (pointwise_conv2d(x, k, 2, impl=impl) ** 2).sum(), (0, 1))(x, k)
  for a, b in zip(grads('native'), grads('dot')):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def test_pointwise_rejects_bad_kernel_and_impl():
  x = jnp.ones((1, 4, 4, 3))
  with pytest.raises(ValueError, match='does not fit 3 input channels'):
    pointwise_conv2d(x, jnp.ones((1, 1, 4, 2)))
  with pytest.raises(ValueError, match='unknown pointwise impl'):
    pointwise_conv2d(x, jnp.ones((1, 1, 3, 2)), impl='gemm')
  with pytest.raises(ValueError, match='pointwise impl must be one of'):
    with pointwise_impl('gemm'):
      pass


def test_conv2d_dispatches_only_unpadded_single_group_1x1_to_dot():
  x = jnp.ones((1, 6, 6, 4))

  def jaxpr(conv, impl):
    v = jax.eval_shape(conv.init, jax.random.PRNGKey(0), x)
    v = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), v)
    with pointwise_impl(impl):
      return str(jax.make_jaxpr(conv.apply)(v, x))
  assert 'conv_general_dilated' not in jaxpr(Conv2d(8, 1, 2, use_bias=True), 'dot')
  assert 'conv_general_dilated' in jaxpr(Conv2d(8, 1), 'native')
  # A grouped or padded 1x1 takes the grouped kernel (XLA's or oneDNN's convolution), not dot.
  assert 'dot_general' not in jaxpr(Conv2d(8, 1, groups=2), 'dot')  # grouped 1x1
  assert 'dot_general' not in jaxpr(Conv2d(8, 1, padding=((1, 1), (0, 0))), 'dot')


@pytest.mark.parametrize('dtype,tol', [(jnp.float32, 1e-5), (jnp.bfloat16, 0.1)])
@pytest.mark.parametrize('k,stride,hw', [(3, 2, (7, 9)), (5, 1, (5, 6)), (5, 2, (11, 4))])
def test_depthwise_shift_add_matches_native_over_dtypes_and_odd_sizes(dtype, tol, k, stride, hw):
  rng = np.random.RandomState(3)
  x = jnp.asarray(rng.randn(3, *hw, 5), dtype)
  kernel = jnp.asarray(rng.randn(k, k, 1, 5) / k, dtype)
  pad = torch_padding(k)
  a = depthwise_conv2d(x, kernel, stride, pad, impl='native')
  b = depthwise_conv2d(x, kernel, stride, pad, impl='shift_add')
  assert a.dtype == b.dtype == dtype and a.shape == b.shape
  np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=tol, rtol=tol)


def _depthwise_grads(x, kernel, stride, padding, dilation, impl, cotangent):
  """Gradients of <depthwise conv, cotangent> in x and the kernel (the backward applied to a
  random output gradient, so every output position's gradient is checked)."""
  def f(x, k):
    return jnp.vdot(depthwise_conv2d(x, k, stride, padding, dilation, impl=impl), cotangent)
  return jax.grad(f, (0, 1))(x, kernel)


@pytest.mark.parametrize('n,hw,c,mult,k,stride,dilation,padding', [
    (2, (9, 9), 5, 1, 3, 1, 1, None), (3, (8, 8), 4, 1, 3, 2, 1, None),
    (2, (7, 10), 6, 1, 5, 2, 1, None), (1, (11, 6), 3, 1, 5, 1, 1, None),
    (2, (10, 9), 8, 2, 3, 2, 1, None), (1, (12, 12), 16, 1, 3, (2, 1), 1, None),
    (2, (9, 8), 4, 1, 3, 1, 2, None), (2, (8, 7), 3, 1, 3, 2, 1, ((0, 1), (1, 0))),
    (1, (6, 6), 24, 1, 5, 3, 1, None), (2, (5, 7), 1, 3, 3, 1, 1, ((2, 2), (0, 0)))])
def test_depthwise_custom_vjp_equals_autodiff_of_native_conv(n, hw, c, mult, k, stride, dilation,
                                                             padding):
  """The shift-and-add kernel's hand-written gradients (flipped-kernel conv of the spread output
  gradient; per-tap reductions) equal jax.grad of lax.conv_general_dilated: strides 1/2/3 and
  mixed, kernels 3/5, dilation, odd/even and non-square sizes, channel multipliers, asymmetric
  padding."""
  rng = np.random.RandomState(7)
  x = jnp.asarray(rng.randn(n, *hw, c), jnp.float32)
  kernel = jnp.asarray(rng.randn(k, k, 1, c * mult) / k, jnp.float32)
  pad = padding or torch_padding(k, dilation)
  y = depthwise_conv2d(x, kernel, stride, pad, dilation, impl='native')
  cot = jnp.asarray(rng.randn(*y.shape), jnp.float32)
  ref = _depthwise_grads(x, kernel, stride, pad, dilation, 'native', cot)
  out = _depthwise_grads(x, kernel, stride, pad, dilation, 'shift_add', cot)
  for name, a, b in zip(('input', 'kernel'), out, ref):
    assert a.shape == b.shape and a.dtype == b.dtype, name
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5, err_msg=name)


def test_depthwise_custom_vjp_matches_torch_autograd_under_jit_and_vmap():
  """Against PyTorch autograd (an implementation outside JAX), stride 2 with k=5 on an even
  size; and the custom rule still composes with jit and vmap."""
  rng = np.random.RandomState(8)
  x = rng.randn(2, 10, 10, 6).astype(np.float32)
  kernel = (rng.randn(5, 5, 1, 6) / 5).astype(np.float32)
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
  kt = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()).requires_grad_()
  yt = F.conv2d(xt, kt, stride=2, padding=2, groups=6)
  cot = rng.randn(*yt.shape).astype(np.float32)
  yt.backward(torch.from_numpy(cot))
  gx, gk = jax.jit(lambda x, k: _depthwise_grads(x, k, 2, torch_padding(5), 1, 'shift_add',
                                                  jnp.asarray(cot.transpose(0, 2, 3, 1))))(
      jnp.asarray(x), jnp.asarray(kernel))
  np.testing.assert_allclose(np.asarray(gx), xt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(gk), kt.grad.numpy().transpose(2, 3, 1, 0), atol=1e-5, rtol=1e-5)
  per_example = jax.vmap(lambda xi: _depthwise_grads(xi[None], jnp.asarray(kernel), 2, torch_padding(5),
                                                     1, 'shift_add', jnp.ones((1, 5, 5, 6)))[1])
  np.testing.assert_allclose(np.asarray(per_example(jnp.asarray(x)).sum(0)),
                             np.asarray(_depthwise_grads(jnp.asarray(x), jnp.asarray(kernel), 2,
                                                         torch_padding(5), 1, 'native',
                                                         jnp.ones((2, 5, 5, 6)))[1]),
                             atol=1e-5, rtol=1e-5)


def test_depthwise_custom_vjp_keeps_bfloat16_and_agrees_with_float32_gradients():
  rng = np.random.RandomState(9)
  x = rng.randn(4, 12, 12, 8).astype(np.float32)
  kernel = (rng.randn(3, 3, 1, 8) / 3).astype(np.float32)
  cot = rng.randn(4, 6, 6, 8).astype(np.float32)
  exact = _depthwise_grads(jnp.asarray(x), jnp.asarray(kernel), 2, torch_padding(3), 1, 'native',
                           jnp.asarray(cot))
  low = _depthwise_grads(jnp.asarray(x, jnp.bfloat16), jnp.asarray(kernel, jnp.bfloat16), 2,
                         torch_padding(3), 1, 'shift_add', jnp.asarray(cot, jnp.bfloat16))
  for name, a, b in zip(('input', 'kernel'), low, exact):
    assert a.dtype == jnp.bfloat16, name
    # the kernel gradient sums 4 * 6 * 6 products: bfloat16's 8-bit mantissa, relative to its scale
    scale = float(np.abs(np.asarray(b)).max())
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b), atol=0.02 * scale, err_msg=name)


@pytest.mark.parametrize('impl', ['shift_add', 'native'])
@pytest.mark.parametrize('splits,mult,k,stride,hw,dtype,tol', [
    ((3, 5), 1, 3, 2, (9, 7), jnp.float32, 1e-5), ((4,), 1, 3, 1, (5, 5), jnp.float32, 1e-5),
    ((2, 1, 4), 2, 5, 2, (11, 6), jnp.float32, 1e-5), ((6, 6), 1, 3, (2, 1), (7, 8), jnp.bfloat16, 0.1)])
def test_depthwise_over_channel_parts_equals_depthwise_of_their_concatenation(
    impl, splits, mult, k, stride, hw, dtype, tol):
  rng = np.random.RandomState(4)
  parts = [jnp.asarray(rng.randn(2, *hw, c), dtype) for c in splits]
  kernel = jnp.asarray(rng.randn(k, k, 1, sum(splits) * mult) / k, dtype)
  pad = torch_padding(k)
  ref = depthwise_conv2d(jnp.concatenate(parts, -1), kernel, stride, pad, impl='native')
  out = depthwise_conv2d_parts(parts, kernel, stride, pad, impl=impl)
  assert out.dtype == ref.dtype == dtype and out.shape == ref.shape
  np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32), atol=tol, rtol=tol)


@pytest.mark.parametrize('cls', [GhostModule, GhostModuleV2])
@pytest.mark.parametrize('features', [8, 7])   # 7: the ghost part is cut to 3 of 4 channels
def test_ghost_module_parts_join_to_its_output_and_convolve_like_it(cls, features):
  """``split=True`` gives (intrinsic, ghost) parts whose concatenation is the module's output; a
  depthwise Conv2d given the parts equals one given the concatenation (both kernels)."""
  x = jnp.asarray(np.random.RandomState(5).randn(2, 8, 8, 6), jnp.float32)
  module, conv = cls(features), Conv2d(features, 3, 2, groups=features)
  v = module.init(jax.random.PRNGKey(0), x)
  whole, parts = module.apply(v, x), module.apply(v, x, split=True)
  assert len(parts) == 2 and parts[0].shape[-1] == 4 and parts[1].shape[-1] == features - 4
  np.testing.assert_array_equal(np.asarray(jnp.concatenate(parts, -1)), np.asarray(whole))
  cv = conv.init(jax.random.PRNGKey(1), whole)
  for impl in ('shift_add', 'native'):
    with depthwise_impl(impl):
      np.testing.assert_allclose(np.asarray(conv.apply(cv, parts)), np.asarray(conv.apply(cv, whole)),
                                 atol=1e-5, rtol=1e-5, err_msg=impl)


@functools.lru_cache(maxsize=None)
def _logits(name, depthwise, pointwise):
  model, variables = model_and_variables(name)
  x = jnp.asarray(np.random.RandomState(0).randn(2, 64, 64, 3), jnp.float32)
  with depthwise_impl(depthwise), pointwise_impl(pointwise):  # read at trace time
    return np.asarray(jax.jit(functools.partial(model.apply, train=False),
                              compiler_options=FAST_COMPILE)(variables, x))


@pytest.mark.xdist_group('kernels_model')
def test_ghostnet_with_fast_kernels_equals_native_kernels():
  """Every Ghost block (primary/cheap convs, SE, shortcut, head) through both kernel sets."""
  fast, native = _logits('ghostnet_050', 'shift_add', 'dot'), _logits('ghostnet_050', 'native', 'native')
  assert np.abs(native).max() > 1e-2
  np.testing.assert_allclose(fast, native, atol=1e-4 * np.abs(native).max(), rtol=1e-4)


@pytest.mark.parametrize('n,hw,cin,cout,groups,k,stride,dilation', [
    (2, (9, 7), 8, 8, 2, 3, 1, 1), (1, (10, 11), 12, 24, 3, 3, 2, 1), (2, (6, 6), 6, 4, 2, 1, 1, 1),
    (1, (9, 9), 16, 8, 4, 3, (2, 1), 2), (3, (5, 7), 9, 9, 9 // 3, 5, 2, 1)])
def test_grouped_split_matches_native_and_torch(n, hw, cin, cout, groups, k, stride, dilation):
  rng = np.random.RandomState(6)
  x = rng.randn(n, *hw, cin).astype(np.float32)
  kernel = rng.randn(k, k, cin // groups, cout).astype(np.float32) / k
  pad = torch_padding(k, dilation)
  ref = F.conv2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(kernel.transpose(3, 2, 0, 1)),
                 stride=stride, padding=pad[0][0] if pad[0] == pad[1] else [p[0] for p in pad],
                 dilation=dilation, groups=groups).numpy().transpose(0, 2, 3, 1)
  for impl in ('native', 'split'):
    out = grouped_conv2d(jnp.asarray(x), jnp.asarray(kernel), stride, pad, dilation, groups, impl=impl)
    assert out.shape == ref.shape, impl
    np.testing.assert_allclose(np.asarray(out), ref, atol=2e-5, rtol=1e-5, err_msg=impl)


def test_grouped_split_keeps_low_precision_and_gradients():
  rng = np.random.RandomState(7)
  x = jnp.asarray(rng.randn(2, 8, 8, 12), jnp.bfloat16)
  k = jnp.asarray(rng.randn(3, 3, 4, 6) / 6, jnp.bfloat16)
  a, b = (grouped_conv2d(x, k, 2, torch_padding(3), 1, 3, impl=i) for i in ('native', 'split'))
  assert a.dtype == b.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=0.05, rtol=0.05)
  x32, k32 = x.astype(jnp.float32), k.astype(jnp.float32)

  def grads(impl):
    f = lambda x, k: (grouped_conv2d(x, k, 1, torch_padding(3), 1, 3, impl=impl) ** 2).sum()
    return jax.grad(f, (0, 1))(x32, k32)
  for a, b in zip(grads('native'), grads('split')):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def test_grouped_rejects_bad_kernel_and_impl_and_conv_kernels_sets_all():
  x = jnp.ones((1, 4, 4, 6))
  with pytest.raises(ValueError, match='does not fit 6 input channels'):
    grouped_conv2d(x, jnp.ones((3, 3, 2, 6)), groups=2)
  with pytest.raises(ValueError, match='unknown grouped impl'):
    grouped_conv2d(x, jnp.ones((3, 3, 3, 6)), groups=2, impl='im2col')
  with pytest.raises(ValueError, match="conv_kernels takes 'auto' or 'native'"):
    with conv_kernels('fast'):
      pass
  conv = Conv2d(6, 3, groups=2)
  v = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), jax.eval_shape(conv.init, jax.random.PRNGKey(0), x))
  count = lambda: str(jax.make_jaxpr(conv.apply)(v, x)).count('conv_general_dilated')
  with grouped_impl('split'):
    assert count() == 2
  with conv_kernels('native'):
    assert count() == 1
