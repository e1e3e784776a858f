"""Re-parameterization: building blocks against direct computation, and deploy == train for every model."""
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ghostnets_jax as gj
from ghostnets_jax.layers import BatchNorm, Conv2d, ConvBN, RepConvBN
from ghostnets_jax.layers.fusion import identity_kernel
from ghostnets_jax.complexity import param_count
from tests.helpers import (FAST_COMPILE, SMALL, compiled_cases, jitted_apply, model_and_variables,
                           randomize_bn_stats)


def test_fold_bn_equals_conv_then_bn():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 4))
  for groups in (1, 4):
    layer = ConvBN(8, 3, 2, groups=groups)
    v = randomize_bn_stats(layer.init(jax.random.PRNGKey(1), x))
    k, b = gj.fold_bn(v['params']['conv']['kernel'], v['params']['bn'], v['batch_stats']['bn'])
    fused = Conv2d(8, 3, 2, groups=groups, use_bias=True).apply({'params': {'kernel': k, 'bias': b}}, x)
    np.testing.assert_allclose(np.asarray(fused), np.asarray(layer.apply(v, x)), atol=1e-5)


def test_fold_bn_keeps_an_existing_conv_bias():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 9, 3))
  conv = Conv2d(5, (1, 5), use_bias=True)
  cv = conv.init(jax.random.PRNGKey(1), x)
  cv = {'params': {**cv['params'], 'bias': jax.random.normal(jax.random.PRNGKey(2), (5,))}}
  bn = BatchNorm(use_running_average=True)
  bv = randomize_bn_stats({'params': {'bn': {'scale': jnp.ones(5), 'bias': jnp.zeros(5)}},
                           'batch_stats': {'bn': {'mean': jnp.zeros(5), 'var': jnp.ones(5)}}})
  want = bn.apply({'params': bv['params']['bn'], 'batch_stats': bv['batch_stats']['bn']}, conv.apply(cv, x))
  k, b = gj.fold_bn(cv['params']['kernel'], bv['params']['bn'], bv['batch_stats']['bn'], cv['params']['bias'])
  np.testing.assert_allclose(np.asarray(conv.apply({'params': {'kernel': k, 'bias': b}}, x)),
                             np.asarray(want), atol=1e-5)


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


def test_merge_branches_of_non_square_kernels():
  """(1, 5), (5, 1) and 1x1 kernels (same centre, PyTorch padding) merge into one 5x5 conv."""
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 8, 7, 2))
  shapes = [(1, 5), (5, 1), (1, 1)]
  ks = [jax.random.normal(jax.random.PRNGKey(i), s + (2, 3)) for i, s in enumerate(shapes)]
  bs = [jax.random.normal(jax.random.PRNGKey(10 + i), (3,)) for i in range(3)]
  want = sum(Conv2d(3, k.shape[:2], use_bias=True).apply({'params': {'kernel': k, 'bias': b}}, x)
             for k, b in zip(ks, bs))
  k, b = gj.merge_branches(zip(ks, bs))
  assert k.shape == (5, 5, 2, 3)
  np.testing.assert_array_equal(np.asarray(gj.pad_kernel(ks[0], 5)[2]), np.asarray(ks[0][0]))
  got = Conv2d(3, 5, use_bias=True).apply({'params': {'kernel': k, 'bias': b}}, x)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
  with pytest.raises(ValueError, match='at least one branch'):
    gj.merge_branches([])


# RepGhost cheap op, GhostNetV3 cheap / primary / stride-2 depthwise ops, a grouped (not depthwise) layer
REP_CONV_CASES = {
    'repghost_cheap': dict(features=8, kernel_size=3, groups=8, use_identity=True, act='relu'),
    'v3_cheap': dict(features=8, kernel_size=3, groups=8, num_conv_branches=3, use_scale=True,
                     use_identity=True),
    'v3_primary': dict(features=6, kernel_size=1, num_conv_branches=3, act='relu'),
    'v3_dw_stride2': dict(features=8, kernel_size=5, strides=2, groups=8, num_conv_branches=3,
                          use_scale=True),
    'grouped': dict(features=8, kernel_size=3, groups=2, num_conv_branches=2, use_scale=True,
                    use_identity=True),
}


@pytest.mark.parametrize('case', sorted(REP_CONV_CASES))
def test_rep_conv_bn_fuses_into_one_conv(case):
  cfg = REP_CONV_CASES[case]
  layer = RepConvBN(**cfg)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 11, 9, 8))
  variables = randomize_bn_stats(layer.init(jax.random.PRNGKey(1), x))
  n = cfg.get('num_conv_branches', 1) + cfg.get('use_scale', False) + cfg.get('use_identity', False)
  assert len(variables['params']) == len(variables['batch_stats']) == n  # one subtree per branch
  deploy_layer, fused = gj.reparameterize(layer, variables)
  assert jax.tree.map(jnp.shape, fused) == jax.tree.map(
      jnp.shape, jax.eval_shape(deploy_layer.init, jax.random.PRNGKey(0), x))  # conv/{kernel,bias}
  want = layer.apply(variables, x)
  np.testing.assert_allclose(np.asarray(deploy_layer.apply(fused, x)), np.asarray(want),
                             atol=2e-5 * float(jnp.abs(want).max()))


def test_rep_conv_bn_rejects_impossible_branches():
  x = jnp.zeros((1, 8, 8, 4))
  with pytest.raises(ValueError, match='identity branch needs in == out channels and stride 1'):
    RepConvBN(4, 3, strides=2, groups=4, use_identity=True).init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match='identity branch needs'):
    RepConvBN(8, 3, use_identity=True).init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match='num_conv_branches must be >= 1'):
    RepConvBN(4, 3, num_conv_branches=0).init(jax.random.PRNGKey(0), x)


def _has_bn(tree):
  return any('bn' in jax.tree_util.keystr(p) or 'scale' in jax.tree_util.keystr(p)
             for p, _ in jax.tree_util.tree_leaves_with_path(tree))


@pytest.mark.parametrize('name', compiled_cases(gj.list_models()))
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


@pytest.mark.parametrize('name', ['ghostnetv2_100', 'repghostnet_050'])
def test_reparameterize_is_pure_and_jittable(name):
  model, variables = model_and_variables(name)
  before = jax.tree.map(np.array, variables)
  eager = gj.reparameterize(model, variables)[1]
  jitted = jax.jit(lambda v: gj.reparameterize(model, v)[1],
                   compiler_options=FAST_COMPILE)(variables)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6), eager, jitted)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), variables, before)
  with pytest.raises(ValueError, match="'params'"):
    gj.reparameterize(model, {'batch_stats': {}})


SHARDED_SCRIPT = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import ghostnets_jax as gj
    from ghostnets_jax.models.ghostnet import GhostBottleneck
    from tests.helpers import random_variables

    assert jax.device_count() == 8, jax.devices()
    # a GhostNetV3 bottleneck: every fusion rule (3-branch primary / cheap with scale and identity,
    # stride-2 depthwise with scale, DFC attention and shortcut ConvBNs)
    block = GhostBottleneck(64, 32, 3, 2, 0.25, mode='attn', num_conv_branches=3)
    variables = random_variables(block, size=16)
    mesh = Mesh(np.array(jax.devices()), ('model',))
    spec = lambda a: P(*[None] * (a.ndim - 1), 'model') if a.shape[-1] % 8 == 0 else P()
    sharded = jax.tree.map(lambda a: jax.device_put(a, NamedSharding(mesh, spec(a))), variables)
    n_sharded = sum(len(set(a.sharding.spec)) > 1 for a in jax.tree.leaves(sharded))
    assert n_sharded > 10, n_sharded
    deploy, want = gj.reparameterize(block, variables)
    for fused in (gj.reparameterize(block, sharded)[1],
                  jax.jit(lambda v: gj.reparameterize(block, v)[1])(sharded)):
      assert jax.tree.structure(fused) == jax.tree.structure(want)
      jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6), fused, want)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
    train_out = jax.jit(block.apply)(sharded, x)
    deploy_out = jax.jit(deploy.apply)(fused, x)
    np.testing.assert_allclose(np.asarray(deploy_out), np.asarray(train_out), atol=1e-4)
    print('sharded leaves:', n_sharded)
''')


def test_reparameterize_sharded_variables_on_a_mesh():
  """8 host devices (set before jax starts, hence a subprocess): sharded in, same numbers out."""
  root = pathlib.Path(__file__).resolve().parents[1]
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8', 'PYTHONPATH': str(root)}
  proc = subprocess.run([sys.executable, '-c', SHARDED_SCRIPT], cwd=root, env=env, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert 'sharded leaves:' in proc.stdout
