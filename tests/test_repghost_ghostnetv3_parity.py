"""RepGhostNet and GhostNetV3 against timm, train and deploy (re-parameterized) forms.

Every width at 64x64 with a 10-class head: the same compiled forwards as the registry tests
(tests/test_models.py, tests/test_reparam.py), so the persistent XLA cache shares them; 224 and
odd non-square inputs for one width per family.
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
from ghostnets_jax.stats import param_count
from tests.helpers import SMALL, jitted_apply
from tests.torch_ref import images, timm_model, torch_forward

REPGHOST = gj.list_models('repghostnet_*')
GHOSTNETV3 = gj.list_models('ghostnetv3_*')
NUM_CLASSES = 10


def _max_diff(a, b) -> float:
  return float(np.abs(np.asarray(a) - np.asarray(b)).max())


@functools.lru_cache(maxsize=None)
def converted(name):
  """timm model (random weights and BN stats), its re-parameterized copy, our model and variables."""
  ref = timm_model(name, num_classes=NUM_CLASSES)
  ref_deploy = reparameterize_model(copy.deepcopy(ref))
  return ref, ref_deploy, gj.create_model(name, num_classes=NUM_CLASSES), gj.convert.from_torch(name, ref.state_dict())


def _n_params(module: torch.nn.Module) -> int:
  return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('name', [pytest.param(n, marks=pytest.mark.xdist_group(n)) for n in REPGHOST + GHOSTNETV3])
def test_train_and_deploy_forms_match_timm(name):
  ref, ref_deploy, model, variables = converted(name)
  # parameter counts: exactly timm's, for the converted 10-class and the registry's 1000-class model
  assert param_count(variables) == _n_params(ref)
  assert gj.model_info(name)['params'] == _n_params(timm_model(name))
  x = images((2, SMALL, SMALL, 3))
  expected = torch_forward(ref, x)
  out = jitted_apply(model)(variables, x)
  assert out.shape == expected.shape == (2, NUM_CLASSES)
  assert _max_diff(out, expected) < 1e-4

  # timm's own re-parameterized model loads as a deploy checkpoint and equals our reparameterize
  deploy_model, fused = gj.reparameterize(model, variables)
  loaded = gj.convert.from_torch(name, ref_deploy.state_dict(), deploy=True)
  assert jax.tree.structure(loaded) == jax.tree.structure(fused)
  assert max(jax.tree.leaves(jax.tree.map(_max_diff, loaded, fused))) < 1e-5
  ref_deploy_out = torch_forward(ref_deploy, x)
  assert _max_diff(ref_deploy_out, expected) < 1e-4  # (timm's own fusion is exact too)
  assert _max_diff(jitted_apply(deploy_model)(loaded, x), ref_deploy_out) < 1e-4
  assert param_count(loaded) < _n_params(ref_deploy) < _n_params(ref)  # we also fold the BNs timm keeps


@pytest.mark.parametrize('name,shape', [
    pytest.param('repghostnet_111', (2, 224, 224, 3), marks=pytest.mark.xdist_group('repghostnet_111')),
    pytest.param('repghostnet_111', (1, 193, 131, 3), marks=pytest.mark.xdist_group('repghostnet_111')),
    pytest.param('ghostnetv3_130', (2, 224, 224, 3), marks=pytest.mark.xdist_group('ghostnetv3_130')),
    pytest.param('ghostnetv3_130', (1, 131, 193, 3), marks=pytest.mark.xdist_group('ghostnetv3_130')),
])
def test_eval_logits_match_timm_at_224_and_odd_sizes(name, shape):
  ref, _, model, variables = converted(name)
  x = images(shape, seed=2)
  assert _max_diff(jitted_apply(model)(variables, x), torch_forward(ref, x)) < 1e-4


@pytest.mark.parametrize('name', [pytest.param(n, marks=pytest.mark.xdist_group(n))
                                  for n in ('repghostnet_050', 'ghostnetv3_050')])
def test_train_forward_matches_timm(name):
  """Batch statistics flow through every branch (identity BN included) as in torch."""
  ref, _, model, variables = converted(name)
  x = images((4, SMALL, SMALL, 3), seed=1)
  torch_train = copy.deepcopy(ref).train()
  torch_train.drop_rate = 0.0
  expected = torch_forward(torch_train, x)
  out, updates = jax.jit(lambda v, x: model.clone(drop_rate=0.0).apply(
      v, x, train=True, mutable=['batch_stats']))(variables, x)
  assert _max_diff(out, expected) < 1e-3
  # the identity-BN branch's running statistics move as torch's do
  key = 'blocks.0.0.ghost1.' + ('fusion_bn.0' if name.startswith('rep') else 'cheap_rpr_skip')
  ours = updates['batch_stats']['blocks_0_0']['ghost1']['cheap_operation']['identity']
  buffers = dict(torch_train.named_buffers())
  np.testing.assert_allclose(np.asarray(ours['mean']), buffers[f'{key}.running_mean'].numpy(), atol=1e-5)
  np.testing.assert_allclose(np.asarray(ours['var']), buffers[f'{key}.running_var'].numpy(), rtol=1e-4)


@pytest.mark.xdist_group('ghostnetv3_050')
def test_official_ghostnetv3_names_load():
  """The official GhostNetV3 file names the branch BNs ``bn`` (timm: ``bn1``)."""
  ref, _, _, variables = converted('ghostnetv3_050')
  official = {re.sub(r'(_rpr_(?:conv\.\d|scale))\.bn1\.', r'\1.bn.', k): v for k, v in ref.state_dict().items()}
  assert sum('_rpr_conv.0.bn.' in k for k in official) > 0
  loaded = gj.convert.from_torch('ghostnetv3_050', official)
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)


@pytest.mark.xdist_group('repghostnet_050')
def test_wrong_form_names_the_fix():
  ref, ref_deploy, _, _ = converted('repghostnet_050')
  with pytest.raises(gj.convert.CheckpointMismatchError, match=r'(?s)unexpected keys: .*cheap_operation\.bias.*pass deploy=True'):
    gj.convert.from_torch('repghostnet_050', ref_deploy.state_dict())
  with pytest.raises(gj.convert.CheckpointMismatchError, match=r'(?s)fusion_bn.*train-form checkpoint.*pass deploy=False'):
    gj.convert.from_torch('repghostnet_050', ref.state_dict(), deploy=True)


# The seed's README table (RepGhost, 002_b6407aa0ea3e4b27.txt): params (M), FLOPs (M) at 224.
SEED_TABLE = {'repghostnet_050': (2.3, 43), 'repghostnet_058': (2.5, 60), 'repghostnet_080': (3.3, 96),
              'repghostnet_100': (4.1, 142), 'repghostnet_111': (4.5, 170), 'repghostnet_130': (5.5, 231),
              'repghostnet_150': (6.6, 301), 'repghostnet_200': (9.8, 516)}


@pytest.mark.parametrize('name', REPGHOST)
def test_seed_table_params_and_flops(name):
  """FLOPs: conv + linear MACs of the deploy form. Params: the official count includes BN (thop's
  ``profile_origin`` sums every leaf module), i.e. the train form (== the official deploy form's
  count, which keeps the BNs outside the RepGhost modules); see the repghost module docstring."""
  params_m, flops_m = SEED_TABLE[name]
  deploy, train = gj.model_info(name, deploy=True), gj.model_info(name)
  assert round(deploy['macs'] / 1e6) == flops_m
  assert train['macs'] == deploy['macs']  # the identity BN adds no conv
  assert round(train['params'] / 1e6, 1) == params_m
  assert deploy['params'] < train['params'] and train['top1'] is not None
