"""S-GhostNet b1/b4 against our own PyTorch reference written from the MindSpore model file
(``ghostnets_jax/reference_torch/s_ghostnet.py``, independent of the library code)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import ghostnets_jax as gj
from ghostnets_jax.models.ghostnet import GhostBottleneck
from ghostnets_jax.reference_torch.s_ghostnet import ARCHS, Bottleneck, TorchSGhostNet
from ghostnets_jax.stats import param_count
from tests.helpers import SMALL, jitted_apply, model_and_variables
from tests.torch_ref import images, randomize_bn, torch_forward


@functools.lru_cache(maxsize=None)
def reference(name, num_classes=10):
  torch.manual_seed(0)
  model = TorchSGhostNet(*ARCHS[name], num_classes=num_classes)
  with torch.no_grad():  # default init leaves the SE/head biases tiny: make them matter
    for n, p in model.named_parameters():
      if n.endswith('bias'):
        p.normal_(0, 0.1)
  return randomize_bn(model).eval()


@pytest.mark.parametrize('name,params', [('s_ghostnet_b1', 11_938_476), ('s_ghostnet_b4', 31_986_130)])
def test_param_counts_and_macs(name, params):
  info = gj.model_info(name)
  assert info['params'] == params
  assert sum(p.numel() for p in reference(name, 1000).parameters()) == params
  assert info['input_size'] == {'s_ghostnet_b1': 240, 's_ghostnet_b4': 384}[name]
  assert info['top1'] == {'s_ghostnet_b1': 79.844, 's_ghostnet_b4': 83.024}[name]
  expected_gmacs = {'s_ghostnet_b1': 0.583, 's_ghostnet_b4': 4.499}[name]
  assert abs(info['macs'] / 1e9 - expected_gmacs) < 0.001


@pytest.mark.xdist_group('s_ghostnet')  # shares model_and_variables with the next test
@pytest.mark.parametrize('name', list(ARCHS))
def test_logits_match_torch_reference(name):
  ref = reference(name)
  variables = gj.convert.from_torch(name, ref.state_dict())
  model, _ = model_and_variables(name)  # same module object as the registry tests: shared compile
  x = images((2, SMALL, SMALL, 3))
  out = np.asarray(jitted_apply(model)(variables, x))
  expected = torch_forward(ref, x)
  assert np.abs(out - expected).max() < 1e-4, np.abs(out - expected).max()
  back = gj.convert.to_torch(name, variables)
  sd = ref.state_dict()
  assert set(back) == {k for k in sd if not k.endswith('num_batches_tracked')}
  assert {'blocks.1.0.dw.conv.weight', 'blocks.0.0.se.conv_reduce.bias', 'blocks.6.bn.running_var',
          'blocks.1.0.shortcut.1.bn.weight', 'bn1.weight', 'conv_head.weight'} <= set(back)


@pytest.mark.xdist_group('s_ghostnet')
def test_forward_at_native_resolutions():
  for name, size in (('s_ghostnet_b1', 240), ('s_ghostnet_b4', 384)):
    model, variables = model_and_variables(name)  # fully convolutional: same variables at any size
    out = jax.jit(functools.partial(model.apply, train=False))(variables, images((1, size, size, 3)))
    assert out.shape == (1, 10) and np.isfinite(np.asarray(out)).all()


@pytest.mark.parametrize('cin,cout,stride', [(24, 24, 1), (24, 40, 2)])
def test_block_matches_torch_and_drop_path_hits_the_residual_branch(cin, cout, stride):
  torch.manual_seed(1)
  ref = randomize_bn(Bottleneck(cin, 72, cout, 5, stride, 0.1), seed=1).eval()
  block = GhostBottleneck(72, cout, 5, stride, 0.1, se_divisor=8)
  x = images((4, 10, 10, cin), seed=2)
  shapes = jax.eval_shape(block.init, jax.random.PRNGKey(0), x)
  # convert with the family rules: prefix the block as a model's first block
  rules = gj.convert.get_torch_rules('s_ghostnet')
  sd = {f'blocks.0.0.{k}': v.numpy() for k, v in ref.state_dict().items()}
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
    keys = [p.key for p in path]
    v = sd[rules.key([keys[0], 'blocks_0_0', *keys[1:]])]
    flat[tuple(keys)] = v.transpose(2, 3, 1, 0) if v.ndim == 4 else v
  variables = {}
  for path, v in flat.items():
    d = variables
    for k in path[:-1]:
      d = d.setdefault(k, {})
    d[path[-1]] = jnp.asarray(v)
  out = np.asarray(jax.jit(block.apply)(variables, x))
  np.testing.assert_allclose(out, torch_forward(ref, x).transpose(0, 2, 3, 1), atol=1e-4)
  # drop-path: each sample is either the shortcut alone or shortcut + branch / keep
  dropped = block.clone(drop_path_rate=0.5)
  y = np.asarray(jax.jit(lambda v, x: dropped.apply(v, x, train=True, mutable=['batch_stats'],
                                                    rngs={'dropout': jax.random.PRNGKey(3)})[0])(variables, x))
  full, short = _branch_and_shortcut(block, variables, x)
  kept = [np.allclose(y[i], short[i] + 2 * full[i], atol=1e-4) for i in range(4)]
  gone = [np.allclose(y[i], short[i], atol=1e-4) for i in range(4)]
  assert all(k != g for k, g in zip(kept, gone)) and any(kept) and any(gone)


def _branch_and_shortcut(block, variables, x):
  """Train-mode outputs split into residual branch and shortcut (drop-path rate 0)."""
  train = jax.jit(lambda v, x: block.apply(v, x, train=True, mutable=['batch_stats'])[0])
  out = np.asarray(train(variables, x))
  zero = jax.tree.map(jnp.zeros_like, variables)
  # the shortcut alone: the same block with the branch's last BN scale/bias zeroed
  p = jax.tree.map(lambda a: a, variables)
  for m in ('primary_conv', 'cheap_operation'):
    p['params']['ghost2'][m]['bn'] = zero['params']['ghost2'][m]['bn']
  short = np.asarray(train(p, x))
  return out - short, short
