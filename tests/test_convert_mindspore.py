"""MindSpore .ckpt -> Flax through a MindSpore network with the model zoo's GhostNet names, and the
checkpoint entry point (format dispatch, orbax hook, errors)."""
import functools

import jax
import mindspore as ms
import numpy as np
import pytest

import ghostnets_jax as gj
from ghostnets_jax.convert import (CheckpointFormat, CheckpointMismatchError, from_mindspore,
                                   load_checkpoint, register_checkpoint_format, to_mindspore)
from ghostnets_jax.convert.formats import CHECKPOINT_FORMATS
from tests.ms_ref import ZooGhostNet, randomize

pytestmark = pytest.mark.xdist_group('mindspore_zoo')


@functools.lru_cache(maxsize=None)
def zoo_net():
  return randomize(ZooGhostNet(num_classes=10), seed=1)


@functools.lru_cache(maxsize=None)
def flax_apply():
  model = gj.create_model('ghostnet_100', num_classes=10)
  return jax.jit(functools.partial(model.apply, train=False))


def zoo_logits(x_nhwc):
  return zoo_net()(ms.Tensor(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))).asnumpy()


def test_zoo_ghostnet_checkpoint_loads_and_matches_mindspore(tmp_path):
  net = zoo_net()
  path = str(tmp_path / 'ghostnet_1x.ckpt')
  # a training checkpoint: the optimizer state MindSpore saves next to the weights is ignored
  extra = [{'name': 'moments.conv_stem.weight', 'data': ms.Tensor(np.zeros((16, 3, 3, 3), np.float32))},
           {'name': 'learning_rate', 'data': ms.Tensor(np.float32(0.1))},
           {'name': 'global_step', 'data': ms.Tensor(np.int32(7))}]
  ms.save_checkpoint([{'name': p.name, 'data': p} for p in net.get_parameters()] + extra, path)
  variables = load_checkpoint('ghostnet_100', path)  # dispatched on .ckpt; classes read from the head
  assert variables['params']['classifier']['kernel'].shape == (1280, 10)
  x = np.random.RandomState(0).randn(2, 64, 64, 3).astype(np.float32)
  want = zoo_logits(x)
  got = np.asarray(flax_apply()(variables, x))
  assert np.abs(got - want).max() < 1e-4 and np.abs(want).max() > 0.1
  # and back: the same names and values, loadable into the MindSpore network
  shapes = {p.name: p.shape for p in net.get_parameters()}
  back = to_mindspore('ghostnet_100', variables, shapes)
  assert set(back) == set(shapes)
  for p in net.get_parameters():
    np.testing.assert_array_equal(back[p.name], p.asnumpy())
  fresh = ZooGhostNet(num_classes=10)
  fresh.set_train(False)
  ms.load_param_into_net(fresh, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in back.items()},
                         strict_load=True)
  np.testing.assert_allclose(fresh(ms.Tensor(x.transpose(0, 3, 1, 2))).asnumpy(), want, atol=1e-6)


def test_checkpoint_of_another_model_is_named():
  params = {p.name: p.asnumpy() for p in zoo_net().get_parameters()}
  no_se = {k: v for k, v in params.items() if '.se.' not in k}  # the zoo's "nose_1x" GhostNet
  with pytest.raises(CheckpointMismatchError, match=r'missing keys: blocks\.3\.se\.conv_expand.bias.*28 in all'):
    from_mindspore('ghostnet_100', no_se)
  renamed = {k.replace('conv_head', 'head_conv'): v for k, v in params.items()}
  with pytest.raises(CheckpointMismatchError, match=r'unexpected keys: head_conv\.weight, head_conv\.bias'):
    from_mindspore('ghostnet_100', renamed)
  with pytest.raises(ValueError, match="no MindSpore parameter mapping .* 'ghostnetv2_100'.*ghostnet_100"):
    from_mindspore('ghostnetv2_100', params)


def test_checkpoint_dispatch_and_orbax_hook(tmp_path):
  with pytest.raises(FileNotFoundError, match='not found'):
    load_checkpoint('ghostnet_100', str(tmp_path / 'missing.pth'))
  odd = tmp_path / 'weights.npz'
  odd.write_bytes(b'')
  with pytest.raises(ValueError, match='unrecognised checkpoint'):
    load_checkpoint('ghostnet_100', str(odd))
  run = tmp_path / 'run' / 'checkpoints' / '1000'
  run.mkdir(parents=True)
  with pytest.raises(ValueError, match='directory.*no saved step'):   # no state/ inside
    load_checkpoint('ghostnet_100', str(run))
  calls = []
  fmt = register_checkpoint_format(CheckpointFormat(
      'orbax-test', lambda p: p.endswith('1000'), lambda name, path, **kw: calls.append((name, path)) or {}))
  try:
    assert load_checkpoint('ghostnet_100', str(run)) == {} and calls == [('ghostnet_100', str(run))]
  finally:
    CHECKPOINT_FORMATS.remove(fmt)


# --- every family, every width: mindcv networks, model-zoo names, round trips ------------------

def random_variables(name, seed=0, **kw):
  """Random values in the variable layout of ``name`` (10 classes), without running init."""
  from ghostnets_jax.convert.pytorch import abstract_variables
  shapes = abstract_variables(gj.create_model(name, num_classes=10, **kw), 64)
  rng = np.random.RandomState(seed)
  return jax.tree_util.tree_map(lambda s: rng.uniform(0.5, 1.5, s.shape).astype(np.float32), shapes)


def assert_round_trip(name, variables, **kw):
  """to_mindspore -> from_mindspore is the identity (names and values)."""
  back = from_mindspore(name, to_mindspore(name, variables, **kw))
  flat_a, flat_b = (jax.tree_util.tree_flatten_with_path(v)[0] for v in (variables, back))
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  for (path, a), (_, b) in zip(flat_a, flat_b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))


@pytest.fixture
def graph_mode():
  """mindcv 0.3.0's cells run in GRAPH_MODE (some of its PyNative ops break under NumPy 2)."""
  ms.set_context(mode=ms.GRAPH_MODE)
  yield
  ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.mark.parametrize('name', ['ghostnet_050', 'ghostnet_100', 'ghostnet_130'])
def test_mindcv_ghostnet_checkpoint_matches_the_mindcv_network(name, graph_mode, tmp_path):
  from mindcv.models import create_model
  net = randomize(create_model(name, num_classes=10), seed=2)
  path = str(tmp_path / f'{name}.ckpt')
  ms.save_checkpoint(net, path)
  variables = gj.convert.load_checkpoint(name, path)
  x = np.random.RandomState(1).randn(1, 64, 64, 3).astype(np.float32)
  want = net(ms.Tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).asnumpy()
  model = gj.create_model(name, num_classes=10)
  got = np.asarray(jax.jit(functools.partial(model.apply, train=False))(variables, x))
  scale = np.abs(want).max()
  assert scale > 0.1 and np.abs(got - want).max() / scale < 1e-4
  shapes = {p.name: p.shape for p in net.get_parameters()}
  back = to_mindspore(name, variables, shapes)   # the mindcv names, picked by the shapes
  assert set(back) == set(shapes)
  for p in net.get_parameters():
    np.testing.assert_array_equal(back[p.name], p.asnumpy())


def test_zoo_ghostnet_names_at_every_width_and_the_widths_they_do_not_fit():
  """The zoo's ``multiplier`` rounds channels up to multiples of 4: our 0.5x table at 0.5, not
  our 1.3x one at 1.3 (stem 24 vs 20), so a 1.3x zoo file is refused naming the schemes."""
  for name, width in (('ghostnet_050', 0.5), ('ghostnet_100', 1.0)):
    net = randomize(ZooGhostNet(num_classes=10, width=width), seed=3)
    params = {p.name: p.asnumpy() for p in net.get_parameters()}
    variables = from_mindspore(name, params)
    back = to_mindspore(name, variables, {k: v.shape for k, v in params.items()})
    assert set(back) == set(params)
    assert_round_trip(name, variables, scheme='model_zoo')
  zoo_130 = {p.name: p.asnumpy() for p in ZooGhostNet(num_classes=10, width=1.3).get_parameters()}
  with pytest.raises(CheckpointMismatchError,
                     match=r"fits none of the MindSpore naming schemes of 'ghostnet_130': 'mindcv' "
                           r"\(mindcv 0.3.0, mindcv/models/ghostnet.py\)"):
    from_mindspore('ghostnet_130', zoo_130)
  with pytest.raises(ValueError,
                     match=r"ghostnet_100: choose scheme= one of .*'mindcv'.*'model_zoo'"):
    to_mindspore('ghostnet_100', random_variables('ghostnet_100'))
  with pytest.raises(ValueError, match=r"unknown naming scheme 'timm'.*'mindcv'"):
    from_mindspore('ghostnet_100', zoo_130, scheme='timm')


def _bn(prefix):
  return [f'{prefix}.{leaf}' for leaf in ('gamma', 'beta', 'moving_mean', 'moving_variance')]


def s_ghostnet_zoo_names(layers, channels):
  """The parameter names of the zoo's ``big_net.py`` GhostNet(large=True), written out from its
  structure: ConvBnAct = ``conv`` + ``bn``; SE in every block (``--large``); ``dw`` on strided
  blocks; ``shortcut.0/1`` where the block changes width or stride; the final ConvBnAct is
  ``blocks.6``; stride 2 in the first block of stages 1, 2, 3 and 5."""
  names = ['conv_stem.weight', *_bn('bn1')]
  c_in = channels[0]
  for i, (n, c) in enumerate(zip(layers, channels)):
    for j in range(n):
      b = f'blocks.{i}.{j}'
      stride = 2 if j == 0 and i in (1, 2, 3, 5) else 1
      for g in ('ghost1', 'ghost2'):
        for part in ('primary_conv', 'cheap_operation'):
          names += [f'{b}.{g}.{part}.conv.weight', *_bn(f'{b}.{g}.{part}.bn')]
      if stride == 2:
        names += [f'{b}.dw.conv.weight', *_bn(f'{b}.dw.bn')]
      names += [f'{b}.se.conv_reduce.weight', f'{b}.se.conv_reduce.bias',
                f'{b}.se.conv_expand.weight', f'{b}.se.conv_expand.bias']
      if stride == 2 or c_in != c:
        for k in (0, 1):
          names += [f'{b}.shortcut.{k}.conv.weight', *_bn(f'{b}.shortcut.{k}.bn')]
      c_in = c
  return names + ['blocks.6.conv.weight', *_bn('blocks.6.bn'), 'conv_head.weight',
                  'conv_head.bias', 'classifier.weight', 'classifier.bias']


def resnet50_zoo_names():
  """MindSpore MultiGrain ``src/resnet.py`` ResNet-50: ``conv1``/``bn1``, ``layerN.K`` blocks of
  ``conv1..3``/``bn1..3``, ``down_sample_layer.0/1`` in each stage's first block, ``end_point``."""
  names = ['conv1.weight', *_bn('bn1')]
  for i, n in enumerate((3, 4, 6, 3)):
    for k in range(n):
      b = f'layer{i + 1}.{k}'
      for j in (1, 2, 3):
        names += [f'{b}.conv{j}.weight', *_bn(f'{b}.bn{j}')]
      if k == 0:
        names += [f'{b}.down_sample_layer.0.weight', *_bn(f'{b}.down_sample_layer.1')]
  return names + ['end_point.weight', 'end_point.bias']


def ghostnet_d_names():
  """Vega's ``GhostModule`` cells under torchvision's ResNet-101 top level: ``base``,
  ``layers.0`` (1x1 conv), ``layers.1..depth-2`` (bottlenecks), ``merge.1/2``, ``cheap.0/1``,
  ``end``."""
  def bottleneck(b, down):
    out = []
    for j in (1, 2, 3):
      out += [f'{b}.conv{j}.weight', *_bn(f'{b}.bn{j}')]
    return out + ([f'{b}.downsample.0.weight', *_bn(f'{b}.downsample.1')] if down else [])
  names = ['conv1.weight', *_bn('bn1')]
  for i, n in enumerate((3, 4, 23, 3)):
    s = f'layer{i + 1}'
    names += bottleneck(f'{s}.base', True) + [f'{s}.layers.0.weight']
    for k in range(1, n - 1):
      names += bottleneck(f'{s}.layers.{k}', False)
    names += [f'{s}.merge.1.weight', *_bn(f'{s}.merge.2'), f'{s}.cheap.0.weight',
              *_bn(f'{s}.cheap.1')] + bottleneck(f'{s}.end', False)
  return names + ['fc.weight', 'fc.bias']


@pytest.mark.parametrize('name,expected', [
    ('s_ghostnet_b1',
     lambda: s_ghostnet_zoo_names((1, 2, 3, 4, 3, 6), (28, 44, 72, 140, 196, 280))),
    ('s_ghostnet_b4',
     lambda: s_ghostnet_zoo_names((3, 5, 5, 12, 6, 14), (36, 60, 108, 168, 232, 336))),
    ('multigrain_resnet50', resnet50_zoo_names),
    ('ghostnet_d_101', ghostnet_d_names),
])
def test_model_zoo_names_and_round_trip(name, expected):
  variables = random_variables(name)
  names = expected()
  assert len(names) == len(set(names))
  assert sorted(to_mindspore(name, variables)) == sorted(names)
  assert_round_trip(name, variables)


def test_multigrain_zoo_checkpoint_file_loads_with_its_1001_classes(tmp_path):
  variables = random_variables('multigrain_resnet50')
  ckpt = to_mindspore('multigrain_resnet50', variables)
  ckpt['end_point.weight'] = np.zeros((1001, 2048), np.float32)   # MindSpore's background class
  ckpt['end_point.bias'] = np.zeros(1001, np.float32)
  path = str(tmp_path / 'multigrain.ckpt')
  ms.save_checkpoint([{'name': k, 'data': ms.Tensor(v)} for k, v in ckpt.items()], path)
  loaded = load_checkpoint('multigrain_resnet50', path)
  assert loaded['params']['classifier']['kernel'].shape == (2048, 1001)
  np.testing.assert_array_equal(loaded['params']['features']['stem']['conv']['kernel'],
                                variables['params']['features']['stem']['conv']['kernel'])


def test_unknown_layout_names_the_schemes():
  params = to_mindspore('s_ghostnet_b1', random_variables('s_ghostnet_b1'))
  renamed = {k.replace('.se.', '.attn.'): v for k, v in params.items()}
  with pytest.raises(CheckpointMismatchError,
                     match=r"naming schemes of 's_ghostnet_b1': 'model_zoo' \(MindSpore model zoo, "
                           r"research/cv/S-GhostNet/src/big_net.py\)"):
    from_mindspore('s_ghostnet_b1', renamed)
