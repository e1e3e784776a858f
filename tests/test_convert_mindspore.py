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
from ghostnets_jax.convert.checkpoint import CHECKPOINT_FORMATS
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
