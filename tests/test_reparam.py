"""Re-parameterization: building blocks against direct computation, and deploy == train for every model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ghostnets_jax as gj
from ghostnets_jax.layers import Conv2d, ConvBN
from ghostnets_jax.reparam import identity_kernel
from ghostnets_jax.stats import param_count
from tests.helpers import SMALL, jitted_apply, model_and_variables, randomize_bn_stats


def test_fold_bn_equals_conv_then_bn():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 4))
  for groups in (1, 4):
    layer = ConvBN(8, 3, 2, groups=groups)
    v = randomize_bn_stats(layer.init(jax.random.PRNGKey(1), x))
    k, b = gj.fold_bn(v['params']['conv']['kernel'], v['params']['bn'], v['batch_stats']['bn'])
    fused = Conv2d(8, 3, 2, groups=groups, use_bias=True).apply({'params': {'kernel': k, 'bias': b}}, x)
    np.testing.assert_allclose(np.asarray(fused), np.asarray(layer.apply(v, x)), atol=1e-5)


def test_pad_kernel_and_identity_kernel():
  k1 = jax.random.normal(jax.random.PRNGKey(0), (1, 1, 3, 5))
  k3 = gj.pad_kernel(k1, 3)
  assert k3.shape == (3, 3, 3, 5)
  np.testing.assert_array_equal(np.asarray(k3[1, 1]), np.asarray(k1[0, 0]))
  assert float(jnp.abs(k3).sum()) == pytest.approx(float(jnp.abs(k1).sum()), rel=1e-6)
  x = jax.random.normal(jax.random.PRNGKey(1), (1, 6, 6, 4))
  for groups in (1, 2, 4):
    ident = identity_kernel(4, groups, 3)
    y = Conv2d(4, 3, groups=groups).apply({'params': {'kernel': ident}}, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=1e-6)
  with pytest.raises(ValueError, match='cannot centre'):
    gj.pad_kernel(jnp.zeros((3, 3, 1, 1)), 1)


def test_merge_branches_equals_sum_of_convs():
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 7, 7, 3))
  ks = [jax.random.normal(jax.random.PRNGKey(i), (s, s, 3, 4)) for i, s in enumerate((3, 1, 3))]
  bs = [jax.random.normal(jax.random.PRNGKey(10 + i), (4,)) for i in range(3)]
  want = sum(Conv2d(4, k.shape[0], use_bias=True).apply({'params': {'kernel': k, 'bias': b}}, x)
             for k, b in zip(ks, bs))
  k, b = gj.merge_branches(zip(ks, bs))
  got = Conv2d(4, 3, use_bias=True).apply({'params': {'kernel': k, 'bias': b}}, x)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def _has_bn(tree):
  return any('bn' in jax.tree_util.keystr(p) or 'scale' in jax.tree_util.keystr(p)
             for p, _ in jax.tree_util.tree_leaves_with_path(tree))


@pytest.mark.parametrize('name', gj.list_models())
def test_deploy_form_equals_train_form(name):
  model, variables = model_and_variables(name)
  deploy_model, deploy_vars = gj.reparameterize(model, variables)
  assert deploy_model.deploy and not model.deploy
  assert 'batch_stats' not in deploy_vars and not _has_bn(deploy_vars['params'])
  assert param_count(deploy_vars) < param_count(variables)
  x = jax.random.normal(jax.random.PRNGKey(3), (2, SMALL, SMALL, 3))
  want = jitted_apply(model)(variables, x)
  got = jitted_apply(deploy_model)(deploy_vars, x)
  scale = float(jnp.abs(want).max())
  assert float(jnp.abs(got - want).max()) < 1e-5 * max(scale, 1.0)
  # the fused tree is exactly what the deploy model initialises
  shapes = jax.eval_shape(lambda: deploy_model.init(jax.random.PRNGKey(0), x))
  assert jax.tree.structure(shapes) == jax.tree.structure(deploy_vars)
  assert jax.tree.map(lambda a: a.shape, shapes) == jax.tree.map(lambda a: a.shape, deploy_vars)


def test_reparameterize_is_pure_and_jittable():
  model, variables = model_and_variables('ghostnetv2_100')
  before = jax.tree.map(np.array, variables)
  eager = gj.reparameterize(model, variables)[1]
  jitted = jax.jit(lambda v: gj.reparameterize(model, v)[1])(variables)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6), eager, jitted)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), variables, before)
  with pytest.raises(ValueError, match="'params'"):
    gj.reparameterize(model, {'batch_stats': {}})
