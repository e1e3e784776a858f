"""Layers against PyTorch: depthwise kernels, BatchNorm semantics, pooling, resizing, activations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ghostnets_jax.layers import (BatchNorm, Conv2d, avg_pool_2x2, depthwise_conv2d, depthwise_impl,
                                  hard_sigmoid, hard_swish, make_divisible, nearest_resize,
                                  torch_padding)


@pytest.mark.parametrize('k,stride,dilation,mult,hw', [
    (3, 1, 1, 1, (9, 9)), (3, 2, 1, 1, (9, 8)), (5, 2, 1, 1, (7, 11)), (5, 1, 1, 2, (6, 6)),
    (3, 2, 2, 1, (13, 10)), ((1, 5), 1, 1, 1, (8, 7)), ((5, 1), 1, 1, 1, (8, 7)), (7, 2, 1, 3, (15, 15)),
    (1, 2, 1, 1, (5, 5))])
def test_depthwise_impls_agree_with_torch(k, stride, dilation, mult, hw):
  c = 6
  rng = np.random.RandomState(0)
  kh, kw = (k, k) if isinstance(k, int) else k
  x = rng.randn(2, *hw, c).astype(np.float32)
  kernel = rng.randn(kh, kw, 1, c * mult).astype(np.float32)
  pad = torch_padding((kh, kw), dilation)
  ref = F.conv2d(torch.from_numpy(x.transpose(0, 3, 1, 2)),
                 torch.from_numpy(kernel.transpose(3, 2, 0, 1)), stride=stride,
                 padding=(pad[0][0], pad[1][0]), dilation=dilation, groups=c).numpy().transpose(0, 2, 3, 1)
  for impl in ('native', 'shift_add'):
    out = depthwise_conv2d(jnp.asarray(x), jnp.asarray(kernel), stride, pad, dilation, impl=impl)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5, err_msg=impl)


def test_depthwise_impls_agree_in_bfloat16_and_gradients():
  rng = np.random.RandomState(1)
  x = jnp.asarray(rng.randn(2, 10, 10, 8), jnp.bfloat16)
  k = jnp.asarray(rng.randn(3, 3, 1, 8), jnp.bfloat16)
  pad = torch_padding(3)
  a = depthwise_conv2d(x, k, 2, pad, impl='native').astype(jnp.float32)
  b = depthwise_conv2d(x, k, 2, pad, impl='shift_add').astype(jnp.float32)
  assert b.dtype == jnp.float32 and a.shape == b.shape == (2, 5, 5, 8)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=0.1, rtol=0.05)
  xf, kf = x.astype(jnp.float32), k.astype(jnp.float32)
  ga = jax.grad(lambda k: depthwise_conv2d(xf, k, 2, pad, impl='native').sum())(kf)
  gb = jax.grad(lambda k: depthwise_conv2d(xf, k, 2, pad, impl='shift_add').sum())(kf)
  np.testing.assert_allclose(np.asarray(ga), np.asarray(gb), rtol=1e-4, atol=1e-4)


def test_depthwise_impl_context_selects_kernel():
  x = jnp.ones((1, 8, 8, 4))
  conv = Conv2d(4, 3, groups=4)
  v = conv.init(jax.random.PRNGKey(0), x)
  with depthwise_impl('native'):
    native = jax.make_jaxpr(conv.apply)(v, x)
  with depthwise_impl('shift_add'):
    shifted = jax.make_jaxpr(conv.apply)(v, x)
  assert 'feature_group_count=4' in str(native)
  assert 'conv_general_dilated' not in str(shifted)
  with pytest.raises(ValueError, match='depthwise impl'):
    with depthwise_impl('fast'):
      pass


@pytest.mark.parametrize('groups', [1, 2])
def test_conv2d_matches_torch_stride2_padding(groups):
  rng = np.random.RandomState(0)
  x = rng.randn(2, 9, 10, 4).astype(np.float32)
  conv = Conv2d(6, 3, 2, groups=groups, use_bias=True)
  v = conv.init(jax.random.PRNGKey(0), jnp.asarray(x))
  tconv = torch.nn.Conv2d(4, 6, 3, 2, 1, groups=groups, bias=True)
  with torch.no_grad():
    tconv.weight.copy_(torch.from_numpy(np.asarray(v['params']['kernel']).transpose(3, 2, 0, 1)))
    tconv.bias.copy_(torch.from_numpy(np.asarray(v['params']['bias'])))
    ref = tconv(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(np.asarray(conv.apply(v, jnp.asarray(x))), ref, atol=1e-5)


def test_batchnorm_matches_torch_train_and_eval():
  rng = np.random.RandomState(0)
  x = rng.randn(4, 5, 6, 3).astype(np.float32) * 3 + 1
  bn = BatchNorm()
  v = bn.init(jax.random.PRNGKey(0), jnp.asarray(x), use_running_average=True)
  tbn = torch.nn.BatchNorm2d(3)
  tx = torch.from_numpy(x.transpose(0, 3, 1, 2))
  tbn.train()
  ref = tbn(tx).detach().numpy().transpose(0, 2, 3, 1)
  y, upd = bn.apply(v, jnp.asarray(x), use_running_average=False, mutable=['batch_stats'])
  np.testing.assert_allclose(np.asarray(y), ref, atol=1e-5)
  np.testing.assert_allclose(np.asarray(upd['batch_stats']['mean']), tbn.running_mean.numpy(), atol=1e-6)
  np.testing.assert_allclose(np.asarray(upd['batch_stats']['var']), tbn.running_var.numpy(), rtol=1e-5)
  tbn.eval()
  ref_eval = tbn(tx).detach().numpy().transpose(0, 2, 3, 1)
  y_eval = bn.apply({**v, 'batch_stats': upd['batch_stats']}, jnp.asarray(x), use_running_average=True)
  np.testing.assert_allclose(np.asarray(y_eval), ref_eval, atol=1e-5)


@pytest.mark.parametrize('hw', [(8, 8), (7, 9), (5, 4)])
def test_avg_pool_and_nearest_resize_match_torch(hw):
  x = np.random.RandomState(0).randn(2, *hw, 3).astype(np.float32)
  tx = torch.from_numpy(x.transpose(0, 3, 1, 2))
  pooled = F.avg_pool2d(tx, 2, 2)
  np.testing.assert_allclose(np.asarray(avg_pool_2x2(jnp.asarray(x))),
                             pooled.numpy().transpose(0, 2, 3, 1), atol=1e-6)
  up = F.interpolate(pooled, size=hw, mode='nearest').numpy().transpose(0, 2, 3, 1)
  np.testing.assert_array_equal(
      np.asarray(nearest_resize(jnp.asarray(pooled.numpy().transpose(0, 2, 3, 1)), hw)), up)


def test_activations_and_make_divisible():
  x = np.linspace(-5, 5, 101).astype(np.float32)
  np.testing.assert_allclose(np.asarray(hard_sigmoid(jnp.asarray(x))),
                             F.relu6(torch.from_numpy(x) + 3).numpy() / 6, atol=1e-7)
  np.testing.assert_allclose(np.asarray(hard_swish(jnp.asarray(x))),
                             F.hardswish(torch.from_numpy(x)).numpy(), atol=1e-6)
  from timm.layers import make_divisible as timm_make_divisible
  for v in np.linspace(1, 1500, 777):
    for d in (4, 8):
      assert make_divisible(v, d) == timm_make_divisible(v, d), (v, d)
  assert make_divisible(10, 8) == 16  # the 90% rule: 8 would lose more than 10%
