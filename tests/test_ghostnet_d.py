"""GhostNets_D against our PyTorch model of Huawei Vega's ``GhostModule`` wiring
(ghostnets_jax/reference_torch/ghostnet_d.py, written from ``noah-vega`` 1.8.5's
``vega/modules/blocks/ghost.py``): parameter count, state-dict names, eval logits."""
import jax
import numpy as np
import pytest

import ghostnets_jax as gj
from ghostnets_jax.reference_torch.ghostnet_d import GhostNetD
from tests.helpers import jitted_apply
from tests.torch_ref import damp_residual_bns, images, randomize_bn, torch_forward

pytestmark = pytest.mark.xdist_group('ghostnet_d')


def n_params(model):
  return sum(p.numel() for p in model.parameters())


def test_parameter_count_is_the_published_one():
  """38,216.872K parameters in the GhostNets_D MindSpore README (1000 classes)."""
  assert n_params(GhostNetD()) == gj.model_info('ghostnet_d_101')['params'] == 38_216_872


def test_vega_state_dict_loads_with_logit_parity():
  import torch
  torch.manual_seed(0)
  ref = damp_residual_bns(randomize_bn(GhostNetD(num_classes=10), seed=0)).eval()
  sd = ref.state_dict()
  # the GhostModule's own attribute names under torchvision's top level
  for key in ('layer1.base.conv1.weight', 'layer1.layers.0.weight', 'layer3.layers.21.bn3.weight',
              'layer2.merge.1.weight', 'layer2.merge.2.running_var', 'layer4.cheap.0.weight',
              'layer4.cheap.1.bias', 'layer4.end.conv3.weight', 'fc.weight'):
    assert key in sd, key
  variables = gj.convert.from_torch('ghostnet_d_101', sd)
  x = images((1, 64, 64, 3))
  expected = torch_forward(ref, x)
  model = gj.create_model('ghostnet_d_101', num_classes=10)
  out = np.asarray(jitted_apply(model)(variables, x))
  scale = np.abs(expected).max()
  assert scale > 0.1 and np.abs(out - expected).max() / scale < 1e-4
  back = gj.convert.to_torch('ghostnet_d_101', variables)
  want = {k: v for k, v in sd.items() if not k.endswith('num_batches_tracked')}
  assert set(back) == set(want)
  for k, v in back.items():
    np.testing.assert_array_equal(v.reshape(want[k].shape), want[k].numpy(), err_msg=k)


def test_graph_has_no_channel_slicing():
  """Slice-free: no op of the traced forward cuts the channel axis (the only slices are the
  spatial subsampling of the strided 1x1 projections, which keep every channel)."""
  model = gj.create_model('ghostnet_d_101', num_classes=10)
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), np.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x))(variables, x)
  ops, channel_cuts = [], []

  def walk(j):
    for eqn in j.eqns:
      ops.append(eqn.primitive.name)
      if eqn.primitive.name in ('gather', 'dynamic_slice', 'split'):
        channel_cuts.append(str(eqn))
      if eqn.primitive.name == 'slice':
        (src,), (dst,) = eqn.invars, eqn.outvars
        if src.aval.shape[-1] != dst.aval.shape[-1]:
          channel_cuts.append(str(eqn))
      for p in eqn.params.values():
        inner = getattr(p, 'jaxpr', None)
        if inner is not None:
          walk(getattr(inner, 'jaxpr', inner))

  walk(jaxpr.jaxpr)
  assert ops.count('concatenate') == 8  # two per stage: the mix and (raw, cheap)
  assert not channel_cuts, channel_cuts[:3]
