"""RepGhostNet and GhostNetV3 against timm, train and deploy (re-parameterized) forms.

Every width at 64x64 with a 10-class head, through the same compiled functions as the registry
tests (tests/test_models.py, tests/test_reparam.py; the persistent XLA cache shares them), then
a 224x224 and an odd non-square ~224 input for one width per family.
"""
import copy
import functools
import re

import jax
import numpy as np
import pytest
import torch
from timm.utils import reparameterize_model

import ghostnets_jax as gj
from ghostnets_jax.complexity import param_count
from tests.helpers import FAST_COMPILE, SMALL, jitted_apply
from tests.torch_ref import assert_logits_match, images, timm_model, torch_forward, torch_forward_float64

REPGHOST = gj.list_models('repghostnet_*')
GHOSTNETV3 = gj.list_models('ghostnetv3_*')
NUM_CLASSES = 10


def _max_diff(a, b) -> float:
  return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def _by_model(*names):
  """Parameters grouped per model on one xdist worker (they share ``converted``)."""
  return [pytest.param(n, marks=pytest.mark.xdist_group(n)) for n in names]


@functools.lru_cache(maxsize=None)
def converted(name, calibrate_at=SMALL):
  """timm model (random weights, BN statistics of random images of ``calibrate_at`` pixels, or
  random ones), our model, and its converted variables."""
  ref = timm_model(name, calibrate_at=calibrate_at, num_classes=NUM_CLASSES)
  return ref, gj.create_model(name, num_classes=NUM_CLASSES), gj.convert.from_torch(name, ref.state_dict())


@functools.lru_cache(maxsize=None)
def reparameterized(name):
  """timm's own re-parameterized copy (``reparameterize_model``) and its deploy-form state dict."""
  ref_deploy = reparameterize_model(copy.deepcopy(converted(name)[0]))
  return ref_deploy, ref_deploy.state_dict()


def _n_params(module: torch.nn.Module) -> int:
  return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('name', _by_model(*REPGHOST, *GHOSTNETV3))
def test_eval_logits_and_param_count_match_timm(name):
  ref, model, variables = converted(name)
  assert param_count(variables) == _n_params(ref)
  x = images((2, SMALL, SMALL, 3))
  # timm's logits in float64: at ghostnetv3_160's depth, float32 rounding alone puts PyTorch's own
  # float32 logits ~1e-4 from them (ours: ~4e-5).
  expected = torch_forward_float64(ref, x)
  out = jitted_apply(model)(variables, x)
  assert out.shape == expected.shape == (2, NUM_CLASSES)
  assert_logits_match(out, expected)


@pytest.mark.parametrize('name', _by_model('repghostnet_050', 'ghostnetv3_050'))
def test_timm_reparameterized_checkpoint_equals_our_reparameterize(name):
  """timm's deploy state dict loads with ``deploy=True`` and equals ``reparameterize`` of ours."""
  ref, model, variables = converted(name)
  ref_deploy, deploy_sd = reparameterized(name)
  deploy_model, fused = gj.reparameterize(model, variables)
  loaded = gj.convert.from_torch(name, deploy_sd, deploy=True)
  assert jax.tree.structure(loaded) == jax.tree.structure(fused)
  assert max(jax.tree.leaves(jax.tree.map(_max_diff, loaded, fused))) < 1e-5
  assert param_count(loaded) < _n_params(ref_deploy) < _n_params(ref)  # we also fold the BNs timm keeps
  x = images((2, SMALL, SMALL, 3))
  ref_out = torch_forward(ref_deploy, x)
  assert_logits_match(ref_out, torch_forward(ref, x))
  assert_logits_match(jitted_apply(deploy_model)(loaded, x), ref_out)


@pytest.mark.parametrize('name,shape', [
    pytest.param('repghostnet_111', (2, 224, 224, 3), marks=pytest.mark.xdist_group('repghostnet_111')),
    pytest.param('ghostnetv3_130', (2, 225, 161, 3),
                 marks=pytest.mark.xdist_group('ghostnetv3_130')),
])
def test_eval_logits_match_timm_at_224_and_odd_sizes(name, shape):
  ref, model, variables = converted(name, calibrate_at=shape[1])
  x = images(shape, seed=2)
  assert_logits_match(jitted_apply(model)(variables, x), torch_forward(ref, x))


@pytest.mark.parametrize('name', _by_model('repghostnet_050', 'ghostnetv3_050'))
def test_train_mode_batch_statistics_match_timm(name):
  """One train-mode step: every BN's running statistics (identity-BN branches included) move as
  torch's. The step is tests/test_models.py's (same compiled function); dropout, which only
  touches the classifier input, does not enter the statistics. Random running statistics: with
  calibrated ones the last stage's batch variances (2 images at 1x1 pixel in GhostNetV3's
  attention branch) are differences of near-equal numbers, off by ~5e-5 relative in float32."""
  ref, model, variables = converted(name, calibrate_at=None)
  x = images((2, SMALL, SMALL, 3), seed=1)
  _, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'],
                                                rngs={'dropout': jax.random.PRNGKey(0)}),
                       compiler_options=FAST_COMPILE)(variables, x)
  torch_train = copy.deepcopy(ref).train()
  torch_forward(torch_train, x)
  buffers = {k: v.numpy() for k, v in torch_train.named_buffers()}
  ours = gj.convert.to_torch(name, {'batch_stats': updates['batch_stats']})
  assert set(ours) == {k for k in buffers if k.endswith(('running_mean', 'running_var'))}
  identity = 'fusion_bn.0' if name.startswith('rep') else 'cheap_rpr_skip'
  assert sum(identity in k for k in ours) > 10
  for k, v in ours.items():
    np.testing.assert_allclose(v, buffers[k], rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.xdist_group('ghostnetv3_050')
def test_official_ghostnetv3_names_load():
  """The official GhostNetV3 file names the branch BNs ``bn`` (timm: ``bn1``)."""
  ref, _, variables = converted('ghostnetv3_050')
  official = {re.sub(r'(_rpr_(?:conv\.\d|scale))\.bn1\.', r'\1.bn.', k): v for k, v in ref.state_dict().items()}
  assert sum('_rpr_conv.0.bn.' in k for k in official) > 0
  loaded = gj.convert.from_torch('ghostnetv3_050', official)
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)


@pytest.mark.xdist_group('repghostnet_050')
def test_wrong_form_names_the_fix():
  ref = converted('repghostnet_050')[0]
  with pytest.raises(gj.convert.CheckpointMismatchError, match=r'(?s)unexpected keys: .*cheap_operation\.bias.*pass deploy=True'):
    gj.convert.from_torch('repghostnet_050', reparameterized('repghostnet_050')[1])
  with pytest.raises(gj.convert.CheckpointMismatchError, match=r'(?s)fusion_bn.*train-form checkpoint.*pass deploy=False'):
    gj.convert.from_torch('repghostnet_050', ref.state_dict(), deploy=True)


# The official RepGhost README table (github.com/ChengpengChen/RepGhost): params (M), FLOPs (M) at 224.
README_TABLE = {'repghostnet_050': (2.3, 43), 'repghostnet_058': (2.5, 60), 'repghostnet_080': (3.3, 96),
              'repghostnet_100': (4.1, 142), 'repghostnet_111': (4.5, 170), 'repghostnet_130': (5.5, 231),
              'repghostnet_150': (6.6, 301), 'repghostnet_200': (9.8, 516)}


@pytest.mark.parametrize('name', REPGHOST)
def test_seed_table_params_and_flops(name):
  """FLOPs: conv + linear MACs of the deploy form. Params: the official count includes BN (thop's
  ``profile_origin`` sums every leaf module), i.e. the train form (== the official deploy form's
  count, which keeps the BNs outside the RepGhost modules); see the repghost module docstring."""
  params_m, flops_m = README_TABLE[name]
  deploy, train = gj.model_info(name, deploy=True), gj.model_info(name)
  assert round(deploy['macs'] / 1e6) == flops_m
  assert train['macs'] == deploy['macs']  # the identity BN adds no conv
  assert round(train['params'] / 1e6, 1) == params_m
  assert deploy['params'] < train['params'] and train['top1'] is not None
