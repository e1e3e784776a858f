"""ResNet-50 trunk against torchvision, GeM pooling, and MultiGrain against a torch reference."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

import ghostnets_jax as gj
from ghostnets_jax.layers import GeM, gem_pool
from ghostnets_jax.reference_torch.multigrain import TorchMultiGrain
from ghostnets_jax.complexity import param_count
from tests.helpers import FAST_COMPILE, SMALL, jitted_apply, model_and_variables
from tests.torch_ref import images, randomize_bn, torch_forward


def torchvision_resnet50(num_classes=10):
  torch.manual_seed(0)
  return randomize_bn(torchvision.models.resnet50(num_classes=num_classes)).eval()


def test_resnet50_matches_torchvision():
  ref = torchvision_resnet50()
  variables = gj.convert.from_torch('resnet50', ref.state_dict())
  assert gj.model_info('resnet50')['params'] == 25_557_032 == sum(
      p.numel() for p in torchvision.models.resnet50().parameters())
  assert param_count(variables) == sum(p.numel() for p in ref.parameters())
  model, _ = model_and_variables('resnet50')  # shares the registry tests' compile
  x = images((2, SMALL, SMALL, 3))
  out = np.asarray(jitted_apply(model)(variables, x))
  assert np.abs(out - torch_forward(ref, x)).max() < 1e-4


def test_multigrain_matches_torch_reference_with_learned_p():
  ref = TorchMultiGrain(2.5, net=torchvision_resnet50()).eval()
  variables = gj.convert.from_torch('multigrain_resnet50', ref.state_dict(), learn_p=True)
  assert float(variables['params']['pool']['p']) == 2.5
  model = gj.create_model('multigrain_resnet50', num_classes=10, learn_p=True)
  x = images((2, SMALL, SMALL, 3))
  outputs, embedded = jax.jit(lambda v, x: (model.apply(v, x, method='outputs'),
                                            model.apply(v, x, method='embed')),
                                     compiler_options=FAST_COMPILE)(variables, x)
  with torch.no_grad():
    logits, normed = ref(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  assert np.abs(np.asarray(outputs['logits']) - logits.numpy()).max() < 1e-4
  assert np.abs(np.asarray(outputs['normalized_embedding']) - normed.numpy()).max() < 1e-5
  np.testing.assert_allclose(np.asarray(embedded), np.asarray(outputs['normalized_embedding']), atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(embedded), axis=1), 1.0, atol=1e-5)
  assert outputs['embedding'].shape == (2, 2048) and outputs['embedding'].dtype == jnp.float32
  # and back to the official names
  assert set(gj.convert.to_torch('multigrain_resnet50', variables)) == {
      k for k in ref.state_dict() if not k.endswith('num_batches_tracked')}


def test_multigrain_defaults_and_bad_backbone():
  model = gj.create_model('multigrain_resnet50')
  assert (model.p, model.learn_p, model.gem_eps) == (3.0, False, 1e-6)
  x = jax.ShapeDtypeStruct((2, SMALL, SMALL, 3), jnp.float32)
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0), x)
  assert 'pool' not in shapes['params']  # fixed p: nothing to learn
  embed_only = gj.create_model('multigrain_resnet50', num_classes=0)
  v = jax.eval_shape(functools.partial(embed_only.init, train=False), jax.random.PRNGKey(0), x)
  assert 'classifier' not in v['params']
  assert jax.eval_shape(embed_only.apply, v, x).shape == (2, 2048)
  bad = model.clone(backbone='ghostnet_100')
  with pytest.raises(ValueError, match=r"backbone 'ghostnet_100'.*global_pool=''"):
    jax.eval_shape(functools.partial(bad.init, train=False), jax.random.PRNGKey(0), x)


def test_gem_limits_and_learnable_p():
  x = jnp.asarray(np.random.RandomState(0).uniform(0.05, 1.0, (3, 4, 5, 6)), jnp.float32)
  np.testing.assert_allclose(np.asarray(gem_pool(x, 1.0)), np.asarray(x.mean((1, 2))), rtol=1e-6)
  mx = np.asarray(x.max((1, 2)))
  pooled = [np.asarray(gem_pool(x, p)) for p in (1.0, 3.0, 10.0, 100.0)]
  assert all((a < b).all() for a, b in zip(pooled, pooled[1:]))  # grows with p ...
  assert (pooled[-1] <= mx * (1 + 1e-6)).all() and (np.abs(pooled[-1] / mx - 1) < 0.035).all()  # ... to max
  # p = 3 against the formula; the clamp keeps zeros/negatives finite
  want = np.mean(np.maximum(np.asarray(x), 1e-6) ** 3, axis=(1, 2)) ** (1 / 3)
  np.testing.assert_allclose(np.asarray(gem_pool(x, 3.0)), want, rtol=1e-5)
  assert np.isfinite(np.asarray(gem_pool(-x, 3.0))).all()
  assert GeM().init(jax.random.PRNGKey(0), x) == {}
  layer = GeM(3.0, learnable=True)
  v = layer.init(jax.random.PRNGKey(0), x)
  assert float(v['params']['p']) == 3.0
  grad = jax.grad(lambda v: layer.apply(v, x).sum())(v)['params']['p']
  h = 1e-2
  fd = (layer.apply({'params': {'p': 3.0 + h}}, x).sum() - layer.apply({'params': {'p': 3.0 - h}}, x).sum()) / (2 * h)
  assert float(grad) != 0.0 and abs(float(grad) - float(fd)) < 1e-3 * max(1.0, abs(float(fd)))
