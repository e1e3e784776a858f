"""G-GhostNet, ResNet and RegNetX against PyTorch: torchvision for the baselines, our own torch
reference (ghostnets_jax/reference_torch/g_ghost.py) for the G-Ghost stage, G-Ghost RegNetX and GhostNets_D.

Eval-mode logits after converting the reference's state dict (random weights and BN statistics,
residual-branch BNs damped so logits stay O(1)) must agree to 1e-4. What can differ between the
frameworks is padding and pooling at odd sizes, not resolution as such: ``ODD`` inputs (100x132)
give odd feature maps at every stride (50x66 -> 25x33 -> 13x17 -> 7x9 -> 4x5), which 224 (even
down to 7x7) does not, at a quarter of the compute. GhostNets_D (101 layers) runs at 64x64 with
the 10-class head the registry tests compile (shared through the persistent cache when warm);
ResNet-101 is ResNet-50's blocks in another count, so its conversion and size are checked
without a forward.
The small networks cover every stage option (cheap ops, ratios, both hosts, slice-free).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

import ghostnets_jax as gj
from ghostnets_jax.layers import BlockSpec, Bottleneck, max_pool_3x3_s2
from ghostnets_jax.stats import param_count
from tests.helpers import FAST_COMPILE, SMALL, jitted_apply
from ghostnets_jax.reference_torch.g_ghost import GGhostRegNet, GGhostResNet, n_params
from tests.torch_ref import damp_residual_bns, images, randomize_bn, torch_forward

ODD = (2, 100, 132, 3)
pytestmark = pytest.mark.xdist_group('g_ghost_parity')


def prepared(build, seed=0):
  torch.manual_seed(seed)
  return damp_residual_bns(randomize_bn(build(), seed)).eval()


def logit_error(name, ref, shape, **overrides):
  """Max |ours - torch| of eval logits after converting ``ref``'s state dict into model ``name``."""
  variables = gj.convert.from_torch(name, ref.state_dict(), **overrides)
  model = gj.create_model(name, num_classes=variables['params']['fc']['kernel'].shape[1], **overrides)
  x = images(shape)
  expected = torch_forward(ref, x)
  out = np.asarray(jitted_apply(model)(variables, x))
  assert out.shape == expected.shape and np.abs(expected).max() > 0.1
  return float(np.abs(out - expected).max())


def assert_round_trip(name, ref):
  """to_torch(from_torch(sd)) gives back every tensor under its PyTorch name."""
  sd = {k: v for k, v in ref.state_dict().items() if not k.endswith('num_batches_tracked')}
  back = gj.convert.to_torch(name, gj.convert.from_torch(name, sd))
  assert set(back) == set(sd)
  for k, v in back.items():
    np.testing.assert_array_equal(v.reshape(sd[k].shape), sd[k].numpy(), err_msg=k)


@pytest.mark.parametrize('name,tv', [('resnet50', 'resnet50'), ('regnetx_032', 'regnet_x_3_2gf')])
def test_logits_match_torchvision(name, tv):
  ref = prepared(getattr(torchvision.models, tv))
  assert gj.model_info(name)['params'] == n_params(ref)
  assert logit_error(name, ref, ODD) < 1e-4


def test_published_sizes():
  """Params and MACs at 224 against torchvision's docs and the G-GhostNet README (10.5M, 1.8B)."""
  expected = {'resnet50': (25_557_032, 4.09), 'regnetx_032': (15_296_552, 3.18),
              'g_ghost_regnetx_032': (10_511_000, 1.80)}
  for name, (params, gmacs) in expected.items():
    info = gj.model_info(name)
    assert (info['params'], round(info['macs'] / 1e9, 2)) == (params, gmacs), name
  tv101 = torchvision.models.resnet101()
  assert gj.model_info('resnet101')['params'] == n_params(tv101)
  assert_round_trip('resnet101', tv101)
  assert gj.model_info('ghostnet_d_101')['params'] == 38_216_872


def test_g_ghost_regnetx_032_matches_reference():
  ref = prepared(lambda: GGhostRegNet([2, 6, 15, 2], [96, 192, 432, 1008], 48))
  assert n_params(ref) == gj.model_info('g_ghost_regnetx_032')['params'] == 10_511_000
  assert logit_error('g_ghost_regnetx_032', ref, ODD) < 1e-4
  assert_round_trip('g_ghost_regnetx_032', ref)


def test_ghostnet_d_101_matches_reference_at_64():
  ref = prepared(lambda: GGhostResNet([3, 4, 23, 3], num_classes=10, variant='ghostnet_d'))
  assert logit_error('ghostnet_d_101', ref, (2, SMALL, SMALL, 3)) < 1e-4


def test_ghostnet_d_101_reference_and_names():
  ref = GGhostResNet([3, 4, 23, 3], variant='ghostnet_d')
  assert n_params(ref) == gj.model_info('ghostnet_d_101')['params'] == 38_216_872
  assert_round_trip('ghostnet_d_101', ref)


def test_g_ghost_resnet50_converts_from_reference():
  ref = GGhostResNet([3, 4, 6, 3])
  variables = gj.convert.from_torch('g_ghost_resnet50', ref.state_dict())
  assert param_count(variables) == n_params(ref) == gj.model_info('g_ghost_resnet50')['params']


# Small networks with every stage option: RegNetX host (group width 8, middle blocks 6) and
# ResNet host (expansion 4); two or more middle blocks so the mix concatenates several outputs.
TINY_REGNET = dict(depths=(1, 3, 4, 2), widths=(24, 48, 72, 96), block=BlockSpec(1, 8))
TINY_RESNET = dict(depths=(3, 4, 3, 3), widths=(32, 64, 96, 128))
TINY = (2, 40, 52, 3)


@pytest.mark.parametrize('cheap_op,ratio', [('identity', 0.5), ('dw3', 0.5), ('dw5', 0.5),
                                             ('conv1x1', 0.25)])
def test_regnet_hosted_stage_options_match_reference(cheap_op, ratio):
  ref = prepared(lambda: GGhostRegNet([1, 3, 4, 2], [24, 48, 72, 96], 8, num_classes=10,
                                      cheap=cheap_op, cheap_ratio=ratio))
  err = logit_error('g_ghost_regnetx_032', ref, TINY, cheap_op=cheap_op, cheap_ratio=ratio,
                    **TINY_REGNET)
  assert err < 1e-4


@pytest.mark.parametrize('name,variant,cheap_op', [('g_ghost_resnet50', 'official', 'conv1x1'),
                                                   ('ghostnet_d_101', 'ghostnet_d', 'identity')])
def test_resnet_hosted_stage_variants_match_reference(name, variant, cheap_op):
  ref = prepared(lambda: GGhostResNet([3, 4, 3, 3], [32, 64, 96, 128], num_classes=10,
                                      variant=variant, cheap=cheap_op))
  assert logit_error(name, ref, TINY, cheap_op=cheap_op, **TINY_RESNET) < 1e-4


def test_train_mode_matches_reference():
  """Batch statistics in every BN (the merge BNs see one pooled pixel per image) and the
  running-statistics update, compared key by key through the converter's names."""
  name = 'g_ghost_regnetx_032'
  ref = prepared(lambda: GGhostRegNet([1, 3, 4, 2], [24, 48, 72, 96], 8, num_classes=10))
  overrides = dict(drop_rate=0.0, **TINY_REGNET)
  variables = gj.convert.from_torch(name, ref.state_dict(), **overrides)
  model = gj.create_model(name, num_classes=10, **overrides)
  x = images((4, 40, 52, 3), seed=1)
  ref.train()
  expected = torch_forward(ref, x)
  out, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']),
                            compiler_options=FAST_COMPILE)(
      variables, x)
  assert np.abs(np.asarray(out) - expected).max() < 1e-3
  stats = gj.convert.to_torch(name, {'batch_stats': updates['batch_stats']})
  buffers = dict(ref.named_buffers())
  assert len(stats) == 2 * sum(isinstance(m, torch.nn.BatchNorm2d) for m in ref.modules())
  for key, value in stats.items():
    np.testing.assert_allclose(value, buffers[key].numpy(), rtol=1e-4, atol=1e-5, err_msg=key)


def _init_shapes(model, shape=TINY):
  return jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                        jax.ShapeDtypeStruct(shape, jnp.float32))


@pytest.mark.parametrize('overrides,msg', [
    (dict(ghost_stages=(3,)), r'layer4: a G-Ghost stage needs depth >= 3 .* got 2'),
    (dict(cheap_op='dw7'), r"cheap_op must be one of .*'dw7'"),
    (dict(cheap_ratio=1.0), r'cheap_ratio=1.0 leaves 0 of 48 channels intrinsic'),
])
def test_bad_stage_options_have_clear_errors(overrides, msg):
  model = gj.create_model('g_ghost_regnetx_032', num_classes=10, **{**TINY_REGNET, **overrides})
  with pytest.raises(ValueError, match=msg):
    _init_shapes(model)


def test_bad_shortcut_and_mismatched_checkpoint():
  with pytest.raises(ValueError, match=r"shortcut must be one of .*'proj'"):
    _init_shapes(Bottleneck(8, 4, shortcut='proj'), (1, 8, 8, 8))
  sd = torchvision.models.resnet50().state_dict()
  # 17 blocks x 15 tensors of layer3 that ResNet-50 lacks
  with pytest.raises(gj.convert.CheckpointMismatchError,
                     match=r'missing keys: layer3\.(6|10)\..*\(255 in all\)'):
    gj.convert.from_torch('resnet101', sd)
  with pytest.raises(ValueError, match='must have one entry per stage'):
    _init_shapes(gj.create_model('resnet50', depths=(3, 4, 6)))


@pytest.mark.parametrize('hw', [(9, 9), (8, 11)])
def test_stem_max_pool_matches_torch_on_negative_inputs(hw):
  x = images((2, *hw, 3)) - 5.0  # all negative: zero padding would win the max
  expected = torch.nn.functional.max_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), 3, 2, 1)
  np.testing.assert_array_equal(np.asarray(max_pool_3x3_s2(jnp.asarray(x))),
                                expected.numpy().transpose(0, 2, 3, 1))


# -- parameter counts by hand ----------------------------------------------------------------------
# The G-Ghost stage of the official code (huawei-noah/Efficient-AI-Backbones,
# g_ghost_pytorch/g_ghost_regnet.py, class Stage) on `depth` host blocks of width `planes`, with
# `raw` intrinsic and cheap = planes - raw cheap channels:
#   base block (in -> planes, the stage's stride) and end block (planes -> planes);
#   depth - 2 middle blocks raw -> raw on the intrinsic part (the first one's shortcut a slice);
#   merge: global pool of the concat of the base output and the middle outputs
#          (planes + raw * (depth - 2) channels), 1x1 conv to cheap + BN, ReLU, 1x1 conv + BN;
#   cheap op on the base output's last `cheap` channels: 1x1 conv + BN, identity, or a k x k
#          depthwise conv + BN (dw3, dw5).
# Host blocks (every conv bias-free, each followed by a BN of 2 parameters per channel):
#   ResNet (torchvision Bottleneck): 1x1 in -> out/4, 3x3 out/4 -> out/4, 1x1 -> out;
#   RegNetX (official RegNetBottleneck, bottleneck ratio 1): 1x1 in -> out, grouped 3x3 whose
#          groups have `group width` input channels each, 1x1 out -> out; middle blocks use
#          int(0.75 x group width);
#   both add a 1x1 conv + BN projection shortcut when the stride or the width changes.
# raw = the largest multiple of 4 (ResNet) / of the middle group width (RegNetX) within
# (1 - cheap_ratio) x planes.

def _resnet_block(cin, cout, stride, group_width=None):
  w = cout // 4
  n = cin * w + 2 * w + 9 * w * w + 2 * w + w * cout + 2 * cout
  return n + (cin * cout + 2 * cout if stride != 1 or cin != cout else 0)


def _regnet_block(cin, cout, stride, group_width):
  n = cin * cout + 2 * cout + 9 * min(group_width, cout) * cout + 2 * cout + cout * cout + 2 * cout
  return n + (cin * cout + 2 * cout if stride != 1 or cin != cout else 0)


def _g_ghost_stage(block, cin, planes, depth, stride, raw, cheap_op, gw=None, mid_gw=None):
  cheap = planes - raw
  n = block(cin, planes, stride, gw) + block(planes, planes, 1, gw)
  n += (depth - 2) * block(raw, raw, 1, mid_gw)
  n += (planes + raw * (depth - 2)) * cheap + 2 * cheap + cheap * cheap + 2 * cheap
  return n + {'conv1x1': cheap * cheap + 2 * cheap, 'identity': 0,
              'dw3': 9 * cheap + 2 * cheap, 'dw5': 25 * cheap + 2 * cheap}[cheap_op]


def hand_resnet_counts(depths, widths, cheap_op, ratio, num_classes):
  """G-Ghost ResNet: 7x7 stem (3 -> 64) + BN, max pool, every stage G-Ghost (strides 1, 2, 2, 2)."""
  out, cin = {'stem': 7 * 7 * 3 * 64 + 2 * 64}, 64
  for i, (d, w) in enumerate(zip(depths, widths)):
    raw = int(w * (1 - ratio) / 4) * 4
    stride = 1 if i == 0 else 2
    out[f'layer{i + 1}'] = _g_ghost_stage(_resnet_block, cin, w, d, stride, raw, cheap_op)
    cin = w
  out['fc'] = cin * num_classes + num_classes
  return out


def hand_regnet_counts(depths, widths, gw, cheap_op, ratio, num_classes):
  """G-Ghost RegNetX: 3x3 stride-2 stem (3 -> 32) + BN; stage 1 and stages of depth <= 2 plain
  RegNetX stages, the others G-Ghost; every stage has stride 2."""
  out, cin, mid = {'stem': 9 * 3 * 32 + 2 * 32}, 32, int(gw * 0.75)
  for i, (d, w) in enumerate(zip(depths, widths)):
    if i > 0 and d > 2:
      raw = int(w * (1 - ratio) / mid) * mid
      out[f'layer{i + 1}'] = _g_ghost_stage(_regnet_block, cin, w, d, 2, raw, cheap_op, gw, mid)
    else:
      out[f'layer{i + 1}'] = (_regnet_block(cin, w, 2, gw)
                              + (d - 1) * _regnet_block(w, w, 1, gw))
    cin = w
  out['fc'] = cin * num_classes + num_classes
  return out


def _param_groups(name, num_classes, **overrides):
  """{stem / layerN / fc: parameter count} of our model, from its init shapes (no compile)."""
  model = gj.create_model(name, num_classes=num_classes, **overrides)
  params = _init_shapes(model, (1, SMALL, SMALL, 3))['params']
  out = {}
  for key, sub in params.items():
    group = key.split('_')[0]
    out[group] = out.get(group, 0) + sum(int(np.prod(a.shape)) for a in jax.tree.leaves(sub))
  return out


def test_g_ghost_resnet50_params_per_stage_by_hand():
  want = hand_resnet_counts((3, 4, 6, 3), (256, 512, 1024, 2048), 'conv1x1', 0.5, 1000)
  assert _param_groups('g_ghost_resnet50', 1000) == want
  assert sum(want.values()) == n_params(GGhostResNet([3, 4, 6, 3]))


@pytest.mark.parametrize('cheap_op,ratio', [('identity', 0.5), ('dw3', 0.5), ('dw5', 0.5),
                                             ('conv1x1', 0.25), ('conv1x1', 0.5)])
def test_stage_options_params_per_stage_by_hand(cheap_op, ratio):
  """Every cheap op and two ratios, on both hosts (the tiny RegNetX and ResNet above)."""
  want = hand_regnet_counts((1, 3, 4, 2), (24, 48, 72, 96), 8, cheap_op, ratio, 10)
  assert _param_groups('g_ghost_regnetx_032', 10, cheap_op=cheap_op, cheap_ratio=ratio,
                       **TINY_REGNET) == want
  want = hand_resnet_counts((3, 4, 3, 3), (32, 64, 96, 128), cheap_op, ratio, 10)
  assert _param_groups('g_ghost_resnet50', 10, cheap_op=cheap_op, cheap_ratio=ratio,
                       **TINY_RESNET) == want
