"""Backbone API: multi-scale features for every registered model, output stride by dilation."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ghostnets_jax as gj
from ghostnets_jax.layers import RepConvBN
from ghostnets_jax.models.backbone import FEATURE_STRIDES, abstract_features, feature_shapes
from ghostnets_jax.models.ghostnet import GhostNet
from ghostnets_jax.models.repghost import RepGhostNet
from ghostnets_jax.models.resnet import ResNet
from tests.helpers import FAST_COMPILE, SMALL, model_and_variables, random_variables
from tests.torch_ref import reference_feature_channels

ALL = gj.list_models()
OTHER = 96  # the second input size of the registry-wide shape check


def _shapes(tree):
  return jax.tree.map(lambda a: a.shape, tree)


@pytest.mark.parametrize('name', ALL)
def test_feature_shapes_channels_and_dilated_pytree(name):
  """At 64x64 (output stride 32) and 96x96 (output stride 16): one map per level, of exactly
  ``size / min(level, output_stride)`` pixels and the channels of the PyTorch reference's maps
  at those strides (timm / torchvision / our torch code; read by hooks in a forward), which
  ``model_info`` reports too; the dilated backbone has the very same variables (a classifier
  checkpoint loads unchanged)."""
  model = gj.create_model(name, num_classes=10)
  channels = reference_feature_channels(name, FEATURE_STRIDES)
  assert sorted(channels) == list(FEATURE_STRIDES)
  assert gj.model_info(name)['feature_channels'] == channels
  feats, variables = abstract_features(model, SMALL)
  dilated_feats, dilated_vars = abstract_features(model.clone(output_stride=16), OTHER)
  for size, out_stride, got in ((SMALL, 32, feats), (OTHER, 16, dilated_feats)):
    assert {s: f.shape for s, f in got.items()} == {
        s: (1, size // min(s, out_stride), size // min(s, out_stride), c) for s, c in channels.items()}
  assert jax.tree.structure(dilated_vars) == jax.tree.structure(variables)
  assert _shapes(dilated_vars) == _shapes(variables)


# -- real forwards on a representative subset ------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _features_fn(model):
  return jax.jit(functools.partial(model.apply, train=False, method='features'),
                 compiler_options=FAST_COMPILE)


def _x(size: int = SMALL, seed: int = 1):
  return jax.random.normal(jax.random.PRNGKey(seed), (2, size, size, 3))


def _close(got, want, rtol=1e-5):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=rtol * max(np.abs(want).max(), 1.0))


# The documented reduction points: the last module that runs at each stride.
TAPS = {
    'ghostnet_050': {2: 'blocks_0_0', 4: 'blocks_2_0', 8: 'blocks_4_0', 16: 'blocks_6_4', 32: 'blocks_9_0'},
    'regnetx_032': {2: 'stem', 4: 'layer1_1', 8: 'layer2_5', 16: 'layer3_14', 32: 'layer4_1'},
}


@pytest.mark.xdist_group('features')
@pytest.mark.parametrize('name', sorted(TAPS))
def test_features_are_the_last_map_at_each_stride(name):
  model, variables = model_and_variables(name)
  x = _x()
  feats = _features_fn(model)(variables, x)
  _, state = jax.jit(lambda v, x: model.apply(v, x, capture_intermediates=True,
                                              mutable=['intermediates']),
                     compiler_options=FAST_COMPILE)(variables, x)
  inter = state['intermediates']
  for s, module in TAPS[name].items():
    _close(feats[s], inter[module]['__call__'][0], 1e-6)  # the same ops, compiled apart
  sub = model.clone(feature_strides=(8, 32))
  picked = _features_fn(sub)(variables, x)
  assert sorted(picked) == [8, 32]
  np.testing.assert_array_equal(np.asarray(picked[32]), np.asarray(feats[32]))


# Small networks without SE / DFC attention / G-Ghost mixing (global pooling or pool-and-upsample
# gates, which are not shift-equivariant): trading a stride for dilation then gives exactly the
# strided maps at every ``s``-th pixel, which checks where each dilation goes.
NO_SE = (((3, 48, 24, 0, 2),), ((5, 72, 40, 0, 2),), ((3, 120, 48, 0, 2), (3, 144, 48, 0, 1)),
         ((5, 160, 64, 0, 2), (5, 192, 64, 0, 1)))


class RepBranchGhostNet(GhostNet):
  """GhostNetV3's re-parameterizable convs (3 branches, scale, identity) in every block, no DFC."""

  def block_options(self, idx: int) -> dict:
    return dict(mode='original', num_conv_branches=3)


TINY = {
    'ghostnet_v1': GhostNet(cfgs=NO_SE, num_classes=10),
    'repghost': RepGhostNet(cfgs=NO_SE, num_classes=10),
    'rep_branches': RepBranchGhostNet(cfgs=NO_SE, num_classes=10),
    'resnet': ResNet(depths=(1, 2, 2, 2), widths=(32, 64, 128, 256), num_classes=10),
}


@pytest.mark.xdist_group('features')
@pytest.mark.parametrize('net', sorted(TINY))
def test_dilation_equals_the_strided_network_subsampled(net):
  model = TINY[net]
  variables = random_variables(model)
  x = _x()
  ref = _features_fn(model)(variables, x)
  os8 = _features_fn(model.clone(output_stride=8))(variables, x)
  for s in (2, 4, 8):
    _close(os8[s], ref[s])
  _close(os8[16][:, ::2, ::2], ref[16], 1e-4)
  _close(os8[32][:, ::4, ::4], ref[32], 1e-4)
  assert os8[32].shape[1] == SMALL // 8


@pytest.mark.xdist_group('features')
@pytest.mark.parametrize('name', ['repghostnet_050', 'ghostnetv3_050'])
def test_dilated_deploy_form_equals_train_form(name):
  """output_stride=16: the classifier's variables load unchanged, and re-parameterization (1x1
  and identity branches fused into the centre of dilated kernels) keeps the features."""
  model, variables = model_and_variables(name)
  dilated = model.clone(output_stride=16)
  x = _x()
  abstract = jax.eval_shape(functools.partial(dilated.init, train=False), jax.random.PRNGKey(0), x)
  assert jax.tree.structure(abstract) == jax.tree.structure(variables)
  assert _shapes(abstract) == _shapes(variables)
  want = _features_fn(dilated)(variables, x)
  deploy_model, deploy_vars = gj.reparameterize(dilated, variables)
  got = _features_fn(deploy_model)(deploy_vars, x)
  assert sorted(got) == list(FEATURE_STRIDES) and want[32].shape[1:3] == (SMALL // 16,) * 2
  for s in FEATURE_STRIDES:
    _close(got[s], want[s])


@pytest.mark.xdist_group('features')
def test_multigrain_features_are_its_trunks():
  model, variables = model_and_variables('multigrain_resnet50')
  trunk = gj.create_model('resnet50', num_classes=0, global_pool='')
  x = _x()
  feats = _features_fn(model.clone(feature_strides=(16, 32)))(variables, x)
  want = _features_fn(trunk.clone(feature_strides=(16, 32)))(
      {k: v['features'] for k, v in variables.items()}, x)
  for s in (16, 32):
    np.testing.assert_array_equal(np.asarray(feats[s]), np.asarray(want[s]))
  assert feature_shapes(model.clone(output_stride=8), SMALL)[32] == (1, 8, 8, 2048)


def test_bad_backbone_options_have_clear_errors():
  x = jnp.zeros((1, SMALL, SMALL, 3))
  model, variables = model_and_variables('ghostnet_050')
  with pytest.raises(ValueError, match=r'output_stride must be one of \(8, 16, 32\), got 4'):
    model.clone(output_stride=4).apply(variables, x)
  with pytest.raises(ValueError, match=r'feature_strides must be a non-empty subset of .*got \(3,\)'):
    model.clone(feature_strides=(3,)).apply(variables, x, method='features')
  with pytest.raises(ValueError, match='odd kernel'):
    RepConvBN(4, 2, groups=4, use_identity=True).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 4)))
