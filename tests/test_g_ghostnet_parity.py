"""G-GhostNet, ResNet and RegNetX against PyTorch: torchvision for the baselines, our own torch
reference (ghostnets_jax/reference_torch/g_ghost.py) for the G-Ghost stage and G-Ghost RegNetX
(GhostNets_D: tests/test_ghostnet_d.py).

Eval-mode logits after converting the reference's state dict (random weights and BN statistics,
residual-branch BNs damped so logits stay O(1)) must agree to 1e-4. What can differ between the
frameworks is padding and pooling at odd sizes, not resolution as such: ``ODD`` inputs (100x132)
give odd feature maps at every stride (50x66 -> 25x33 -> 13x17 -> 7x9 -> 4x5), which 224 (even
down to 7x7) does not, at a quarter of the compute. ResNet-101 is ResNet-50's blocks in another
count, so its conversion and size are checked without a forward. Every width of the official
G-Ghost RegNetX table and every torchvision RegNetX is converted and its re-parameterized form
compared at ``NON_SQUARE`` (batch 1, 36x52: odd maps at every stride), one compile per width.
The small networks cover every stage option (cheap ops, ratios, both hosts).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

import ghostnets_jax as gj
from ghostnets_jax.export import export_onnx, verify_onnx
from ghostnets_jax.layers import BlockSpec, Bottleneck, max_pool_3x3_s2
from ghostnets_jax.complexity import param_count
from ghostnets_jax import reference_torch
from tests.helpers import FAST_COMPILE, SMALL, jitted_apply
from ghostnets_jax.reference_torch.g_ghost import (OFFICIAL_WIDTHS, GGhostRegNet, GGhostResNet,
                                                   g_ghost_regnetx, n_params)
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


def test_resnet50_logits_match_torchvision():
  """The train form in eval mode (RegNetX: every width's deploy form, below)."""
  ref = prepared(torchvision.models.resnet50)
  assert gj.model_info('resnet50')['params'] == n_params(ref)
  assert logit_error('resnet50', ref, ODD) < 1e-4


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


# -- every width of the official table ------------------------------------------------------------

G_GHOST = gj.list_models('g_ghost_regnetx_*')
REGNETX = gj.list_models('regnetx_*')
NON_SQUARE = (1, 36, 52, 3)  # odd maps at every stride: 18x26 -> 9x13 -> 5x7 -> 3x4 -> 2x2

# pycls MODEL_ZOO.md (facebookresearch/pycls): RegNetX params (M) and flops (B), one decimal.
PYCLS = {'002': (2.7, 0.2), '004': (5.2, 0.4), '006': (6.2, 0.6), '008': (7.3, 0.8),
         '016': (9.2, 1.6), '032': (15.3, 3.2), '040': (22.1, 4.0), '064': (26.2, 6.5),
         '080': (39.6, 8.0), '120': (46.1, 12.1), '160': (54.3, 15.9), '320': (107.8, 31.7)}
# The official G-GhostNet README's released checkpoints: params (M), FLOPs (B), top-1.
G_GHOST_README = {'032': (10.5, 1.8, 77.8), '040': (15.7, 2.2, 78.6), '080': (24.6, 4.2, 79.0),
                  '160': (32.4, 9.0, 79.9)}


def conv_and_linear_macs(model: torch.nn.Module, hw=(224, 224)) -> int:
  """Multiply-accumulates of every Conv2d (output elements x in/groups x kh x kw) and Linear
  (in x out) in one forward at ``hw``, counted by forward hooks (works on the meta device)."""
  total = 0

  def hook(m, inputs, out):
    nonlocal total
    if isinstance(m, torch.nn.Conv2d):
      total += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
    elif isinstance(m, torch.nn.Linear):
      total += out.numel() * m.in_features
  handles = [m.register_forward_hook(hook) for m in model.modules()]
  with torch.no_grad():
    model(torch.zeros(1, 3, *hw, device=next(model.parameters()).device))
  for h in handles:
    h.remove()
  return total


def test_every_width_is_registered_with_the_official_size():
  """All twelve widths of the official ``g_ghost_regnet.py`` and their RegNetX hosts: params and
  MACs at 224 equal our PyTorch model of the official structure (built on the meta device: no
  memory, no init), the hosts round to pycls's published params and flops."""
  assert [n[-3:] for n in G_GHOST] == [n[-3:] for n in REGNETX] == sorted(OFFICIAL_WIDTHS)
  for tag in OFFICIAL_WIDTHS:
    for name, ghost in ((f'g_ghost_regnetx_{tag}', True), (f'regnetx_{tag}', False)):
      with torch.device('meta'):
        ref = g_ghost_regnetx(tag, ghost=ghost).eval()
      info = gj.model_info(name)
      assert (info['params'], info['macs']) == (n_params(ref), conv_and_linear_macs(ref)), name
    info = gj.model_info(f'regnetx_{tag}')
    assert (round(info['params'] / 1e6, 1), round(info['macs'] / 1e9, 1)) == PYCLS[tag], tag
    assert gj.get_spec(f'regnetx_{tag}').top1 is not None


def test_published_checkpoints():
  """The README's params (to 0.1 M) and top-1 exactly; its FLOPs within 0.1 B (it rounds to 0.1 B
  and lists 4.2 B for the 8.0G model, whose convolutions and fc make 4.15 B multiply-adds)."""
  for tag, (params, gflops, top1) in G_GHOST_README.items():
    name = f'g_ghost_regnetx_{tag}'
    info = gj.model_info(name)
    assert round(info['params'] / 1e6, 1) == params and gj.get_spec(name).top1 == top1, name
    assert abs(info['macs'] / 1e9 - gflops) < 0.1, name
  assert [n for n in G_GHOST if gj.get_spec(n).top1] == sorted(
      f'g_ghost_regnetx_{t}' for t in G_GHOST_README)


@functools.lru_cache(maxsize=None)
def converted(name):
  """``(ref, deploy_model, deploy_vars)``: the random-weight PyTorch reference of ``name`` (10
  classes) and its state dict converted by ``from_torch`` and re-parameterized."""
  ref = prepared(lambda: reference_torch.build(name, num_classes=10))
  variables = gj.convert.from_torch(name, ref.state_dict())
  return (ref, *gj.reparameterize(gj.create_model(name, num_classes=10), variables))


# regnetx_004: pycls's RegNetX-400MF (last stage 384 wide) through torchvision's RegNet class,
# the reference of the hosts torchvision has no model of (its regnet_x_400mf is 400 wide).
@pytest.mark.parametrize('name', G_GHOST + ['regnetx_004'] +
                         [n for n in REGNETX if gj.get_spec(n).reference])
def test_every_width_converts_and_its_deploy_form_matches_torch(name):
  """The official layout (``.pth`` names) of each G-Ghost width, and torchvision's ``regnet_x_*``
  of each host torchvision has: random weights in, the re-parameterized model's logits at a
  non-square input within 1e-4 of PyTorch's, and ``to_torch`` gives back every tensor."""
  ref, deploy_model, deploy_vars = converted(name)
  x = images(NON_SQUARE)
  expected = torch_forward(ref, x)
  assert np.abs(expected).max() > 0.1
  assert np.abs(np.asarray(jitted_apply(deploy_model)(deploy_vars, x)) - expected).max() < 1e-4
  assert_round_trip(name, ref)


@pytest.mark.parametrize('name', G_GHOST)
def test_every_g_ghost_width_exports_to_onnx(name):
  """The converted official weights of each width through ONNX: onnxruntime within 1e-4 of PyTorch
  (the export tests check one width against JAX at batch 1 and 4)."""
  ref, deploy_model, deploy_vars = converted(name)
  proto = export_onnx(deploy_model, deploy_vars, NON_SQUARE[1:3])
  result = verify_onnx(proto, lambda x: torch_forward(ref, x), NON_SQUARE[1:], batch_sizes=(1,))
  assert result.max_abs_diff[1] < 1e-4 and result.max_abs_reference > 0.1


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


def test_resnet_hosted_stage_matches_reference():
  ref = prepared(lambda: GGhostResNet([3, 4, 3, 3], [32, 64, 96, 128], num_classes=10))
  assert logit_error('g_ghost_resnet50', ref, TINY, **TINY_RESNET) < 1e-4


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
