"""S-GhostNet b1/b4 against our own PyTorch reference written from the MindSpore model file
(``ghostnets_jax/reference_torch/s_ghostnet.py``, independent of the library code)."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import ghostnets_jax as gj
from ghostnets_jax.models.ghostnet import GhostBottleneck
from ghostnets_jax.reference_torch.s_ghostnet import ARCHS, Bottleneck, TorchSGhostNet
from ghostnets_jax.complexity import param_count
from tests.helpers import FAST_COMPILE, SMALL, jitted_apply, model_and_variables
from tests.torch_ref import assert_logits_match, calibrate_bn, images, randomize_bn, torch_forward


@functools.lru_cache(maxsize=None)
def reference(name, num_classes=10):
  torch.manual_seed(0)
  model = TorchSGhostNet(*ARCHS[name], num_classes=num_classes)
  with torch.no_grad():  # default init leaves the SE/head biases tiny: make them matter
    for n, p in model.named_parameters():
      if n.endswith('bias'):
        p.normal_(0, 0.1)
  return calibrate_bn(randomize_bn(model))


@pytest.mark.parametrize('name,params', [('s_ghostnet_b1', 11_938_476), ('s_ghostnet_b4', 31_986_130)])
def test_param_counts_and_macs(name, params):
  info = gj.model_info(name)
  assert info['params'] == params == sum(hand_counts(*SGHOST_ARCHS[name]).values())
  assert sum(p.numel() for p in reference(name, 1000).parameters()) == params
  assert info['input_size'] == {'s_ghostnet_b1': 240, 's_ghostnet_b4': 384}[name]
  assert info['top1'] == {'s_ghostnet_b1': 79.844, 's_ghostnet_b4': 83.024}[name]
  expected_gmacs = {'s_ghostnet_b1': 0.583, 's_ghostnet_b4': 4.499}[name]
  assert abs(info['macs'] / 1e9 - expected_gmacs) < 0.001


# -- parameter counts by hand, from the MindSpore model zoo's research/cv/S-GhostNet --------------
# README: b1 = --channels=28,44,72,140,196,280 --layers=1,2,3,4,3,6 --large, b4 =
# --channels=36,60,108,168,232,336 --layers=3,5,5,12,6,14 --large. src/big_net.py, large mode:
# every width rounded by _make_divisible(x, 4) (nearest multiple of 4, bumped by 4 when that loses
# more than 10 %); stage i's blocks are [kernel, hidden, out, se 0.1, stride] with
#   stage 0: [3, c0, c0, s1]
#   stage 1: first [3, 3*c0, c1, s2], then [3, 3*c1, c1, s1]
#   stage 2: first [5, 3*c1, c2, s2], then [5, 3*c2, c2, s1]
#   stage 3: first [3, 6*c2, c3, s2], then [3, 2.5*c3, c3, s1]
#   stage 4: first [3, 6*c3, c4, s1], then [3, 6*c4, c4, s1]
#   stage 5: first [5, 6*c4, c5, s2], then [5, 6*c5, c5, s1]
# and a GhostBottleneck(in, hidden, out, k, stride) holds: GhostModule(in, hidden) (1x1 conv to
# ceil(hidden/2) + BN, 3x3 depthwise + BN), a k x k depthwise + BN when stride > 1, SE (1x1 convs
# with bias hidden -> make_divisible(0.1 * hidden, 8) -> hidden), GhostModule(hidden, out), and when
# in != out or stride > 1 a shortcut: k x k depthwise + BN on in, 1x1 in -> out + BN. Then a 1x1
# ConvBnAct to the last block's hidden width, global pool, conv_head (bias) to
# max(1280, 5 * last out), classifier (bias). A BN has 2 parameters per channel (gamma, beta).


def _div(x, divisor=4):
  new = max(divisor, int(x + divisor / 2) // divisor * divisor)
  return new + divisor if new < 0.9 * x else new


def _ghost(cin, cout):
  init = math.ceil(cout / 2)
  return cin * init + 2 * init + 9 * init + 2 * init


def _bottleneck(cin, hidden, cout, k, stride):
  se = _div(0.1 * hidden, 8)
  n = _ghost(cin, hidden) + (hidden * se + se) + (se * hidden + hidden) + _ghost(hidden, cout)
  if stride > 1:
    n += k * k * hidden + 2 * hidden
  if cin != cout or stride > 1:
    n += k * k * cin + 2 * cin + cin * cout + 2 * cout
  return n


def _stage_blocks(i, j, c):
  """[kernel, hidden, out, stride] of block j of stage i (big_net.gen_cfgs_large)."""
  first = j == 0
  return {0: [3, c[0], c[0], 1],
          1: [3, 3 * c[0], c[1], 2] if first else [3, 3 * c[1], c[1], 1],
          2: [5, 3 * c[1], c[2], 2] if first else [5, 3 * c[2], c[2], 1],
          3: [3, 6 * c[2], c[3], 2] if first else [3, 2.5 * c[3], c[3], 1],
          4: [3, 6 * c[3], c[4], 1] if first else [3, 6 * c[4], c[4], 1],
          5: [5, 6 * c[4], c[5], 2] if first else [5, 6 * c[5], c[5], 1]}[i]


def hand_counts(layers, channels, num_classes=1000):
  """{top-level parameter group: count}: the stem, each stage, the final 1x1 ConvBnAct, head."""
  cin = _div(channels[0])
  out = {'conv_stem': 27 * cin + 2 * cin}
  for i, n in enumerate(layers):
    out[f'blocks_{i}'] = 0
    for j in range(n):
      k, hidden, c, stride = _stage_blocks(i, j, channels)
      out[f'blocks_{i}'] += _bottleneck(cin, _div(hidden), _div(c), k, stride)
      cin, last_hidden = _div(c), _div(hidden)
  out[f'blocks_{len(layers)}'] = cin * last_hidden + 2 * last_hidden
  head = max(1280, 5 * cin)
  out['conv_head'] = last_hidden * head + head
  out['classifier'] = head * num_classes + num_classes
  return out


SGHOST_ARCHS = {'s_ghostnet_b1': ((1, 2, 3, 4, 3, 6), (28, 44, 72, 140, 196, 280)),
                's_ghostnet_b4': ((3, 5, 5, 12, 6, 14), (36, 60, 108, 168, 232, 336))}


@pytest.mark.parametrize('name', list(SGHOST_ARCHS))
def test_param_counts_per_stage_match_the_hand_derived_formulas(name):
  model = gj.create_model(name)
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                          jnp.zeros((1, SMALL, SMALL, 3)))['params']
  ours = {}
  for key, sub in shapes.items():
    group = key.rsplit('_', 1)[0] if key.startswith('blocks_') else key
    ours[group] = ours.get(group, 0) + sum(int(np.prod(a.shape)) for a in jax.tree.leaves(sub))
  want = hand_counts(*SGHOST_ARCHS[name])
  assert ours == want


@pytest.mark.xdist_group('s_ghostnet')  # shares model_and_variables with the next test
@pytest.mark.parametrize('name', list(ARCHS))
def test_logits_match_torch_reference(name):
  ref = reference(name)
  variables = gj.convert.from_torch(name, ref.state_dict())
  model, _ = model_and_variables(name)  # same module object as the registry tests: shared compile
  x = images((2, SMALL, SMALL, 3))
  out = np.asarray(jitted_apply(model)(variables, x))
  expected = torch_forward(ref, x)
  assert_logits_match(out, expected)
  back = gj.convert.to_torch(name, variables)
  sd = ref.state_dict()
  assert set(back) == {k for k in sd if not k.endswith('num_batches_tracked')}
  assert {'blocks.1.0.dw.conv.weight', 'blocks.0.0.se.conv_reduce.bias', 'blocks.6.bn.running_var',
          'blocks.1.0.shortcut.1.bn.weight', 'bn1.weight', 'conv_head.weight'} <= set(back)


@pytest.mark.xdist_group('s_ghostnet')
def test_forward_at_native_resolutions():
  for name, size in (('s_ghostnet_b1', 240), ('s_ghostnet_b4', 384)):
    model, variables = model_and_variables(name)  # fully convolutional: same variables at any size
    out = jax.jit(functools.partial(model.apply, train=False),
                  compiler_options=FAST_COMPILE)(variables, images((1, size, size, 3)))
    assert out.shape == (1, 10) and np.isfinite(np.asarray(out)).all()


@pytest.mark.parametrize('cin,cout,stride', [(24, 24, 1), (24, 40, 2)])
def test_block_matches_torch_and_drop_path_hits_the_residual_branch(cin, cout, stride):
  torch.manual_seed(1)
  ref = randomize_bn(Bottleneck(cin, 72, cout, 5, stride, 0.1), seed=1).eval()
  block = GhostBottleneck(72, cout, 5, stride, 0.1, se_divisor=8)
  x = images((4, 10, 10, cin), seed=2)
  shapes = jax.eval_shape(block.init, jax.random.PRNGKey(0), x)
  # convert with the family rules: prefix the block as a model's first block
  rules = gj.convert.get_torch_rules('s_ghostnet_b1')
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
  out = np.asarray(jax.jit(block.apply, compiler_options=FAST_COMPILE)(variables, x))
  np.testing.assert_allclose(out, torch_forward(ref, x).transpose(0, 2, 3, 1), atol=1e-4)
  # drop-path: each sample is either the shortcut alone or shortcut + branch / keep
  dropped = block.clone(drop_path_rate=0.5)
  y = np.asarray(jax.jit(lambda v, x: dropped.apply(v, x, train=True, mutable=['batch_stats'],
                                                    rngs={'dropout': jax.random.PRNGKey(3)})[0],
                       compiler_options=FAST_COMPILE)(variables, x))
  full, short = _branch_and_shortcut(block, variables, x)
  kept = [np.allclose(y[i], short[i] + 2 * full[i], atol=1e-4) for i in range(4)]
  gone = [np.allclose(y[i], short[i], atol=1e-4) for i in range(4)]
  assert all(k != g for k, g in zip(kept, gone)) and any(kept) and any(gone)


def _branch_and_shortcut(block, variables, x):
  """Train-mode outputs split into residual branch and shortcut (drop-path rate 0)."""
  train = jax.jit(lambda v, x: block.apply(v, x, train=True, mutable=['batch_stats'])[0],
                  compiler_options=FAST_COMPILE)
  out = np.asarray(train(variables, x))
  zero = jax.tree.map(jnp.zeros_like, variables)
  # the shortcut alone: the same block with the branch's last BN scale/bias zeroed
  p = jax.tree.map(lambda a: a, variables)
  for m in ('primary_conv', 'cheap_operation'):
    p['params']['ghost2'][m]['bn'] = zero['params']['ghost2'][m]['bn']
  short = np.asarray(train(p, x))
  return out - short, short
