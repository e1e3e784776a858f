"""GhostNet v1/v2 against timm: converted random weights give the same logits and param counts."""
import functools

import jax
import numpy as np
import pytest

import ghostnets_jax as gj
from ghostnets_jax.complexity import param_count
from tests.helpers import FAST_COMPILE, jitted_apply
from tests.torch_ref import assert_logits_match, images, timm_model, torch_forward

MODELS = ['ghostnet_050', 'ghostnet_100', 'ghostnet_130',
          'ghostnetv2_100', 'ghostnetv2_130', 'ghostnetv2_160']


@functools.lru_cache(maxsize=None)
def converted(name):
  ref = timm_model(name, calibrate_at=224)
  return ref, gj.convert.from_torch(name, ref.state_dict()), gj.create_model(name)


@pytest.mark.xdist_group('ghostnet_parity')
@pytest.mark.parametrize('name', MODELS)
def test_eval_logits_match_timm(name):
  ref, variables, model = converted(name)
  assert param_count(variables) == sum(p.numel() for p in ref.parameters())
  apply = jitted_apply(model)
  for shape in ((2, 224, 224, 3), (2, 192, 256, 3)):
    x = images(shape)
    expected = torch_forward(ref, x)
    out = np.asarray(apply(variables, x))
    assert out.shape == expected.shape == (2, 1000)
    assert_logits_match(out, expected)


@pytest.mark.xdist_group('ghostnet_parity')
@pytest.mark.parametrize('name', ['ghostnet_100', 'ghostnetv2_100'])
def test_train_forward_matches_timm(name):
  ref, variables, model = converted(name)
  x = images((4, 128, 128, 3), seed=1)
  ref.train()
  ref.drop_rate = 0.0
  try:
    expected = torch_forward(ref, x)
  finally:
    ref.eval()
  # dropout off on both sides; batch statistics on
  train_apply = functools.partial(model.clone(drop_rate=0.0).apply, train=True, mutable=['batch_stats'])
  out, updates = jax.jit(train_apply, compiler_options=FAST_COMPILE)(variables, x)
  assert_logits_match(out, expected, atol=1e-3)
  # running statistics moved as torch's do (momentum 0.1, unbiased variance)
  tm = dict(ref.named_buffers())
  ours = updates['batch_stats']['conv_stem']['bn']
  np.testing.assert_allclose(np.asarray(ours['mean']), tm['bn1.running_mean'].numpy(), atol=1e-5)
  np.testing.assert_allclose(np.asarray(ours['var']), tm['bn1.running_var'].numpy(), rtol=1e-4)


def test_state_dict_of_another_model_is_rejected():
  ref = timm_model('ghostnet_050')
  with pytest.raises(gj.convert.CheckpointMismatchError, match='mis-shaped keys: conv_stem.weight'):
    gj.convert.from_torch('ghostnet_100', ref.state_dict())
  sd = dict(timm_model('ghostnet_100').state_dict())
  sd.pop('blocks.3.0.se.conv_reduce.bias')
  sd['extra.weight'] = sd['classifier.weight']
  with pytest.raises(gj.convert.CheckpointMismatchError) as e:
    gj.convert.from_torch('ghostnet_100', sd)
  assert 'missing keys: blocks.3.0.se.conv_reduce.bias' in str(e.value)
  assert 'unexpected keys: extra.weight' in str(e.value)


def test_num_classes_inferred_and_round_trip_to_torch(tmp_path):
  ref = timm_model('ghostnet_050', num_classes=7)
  variables = gj.convert.from_torch('ghostnet_050', ref.state_dict())
  assert variables['params']['classifier']['kernel'].shape == (1280, 7)
  back = gj.convert.to_torch('ghostnet_050', variables)
  sd = ref.state_dict()
  for k, v in back.items():
    np.testing.assert_array_equal(v.reshape(sd[k].shape), sd[k].numpy())
  assert set(back) == {k for k in sd if not k.endswith('num_batches_tracked')}
  # files: .pth via torch.save and .safetensors
  import torch
  from safetensors.numpy import save_file
  torch.save({'state_dict': ref.state_dict()}, tmp_path / 'w.pth')
  save_file({k: v.reshape(sd[k].shape) for k, v in back.items()}, str(tmp_path / 'w.safetensors'))
  for f in ('w.pth', 'w.safetensors'):
    loaded = gj.convert.load_torch_checkpoint('ghostnet_050', str(tmp_path / f))
    np.testing.assert_array_equal(np.asarray(loaded['params']['conv_stem']['conv']['kernel']),
                                  np.asarray(variables['params']['conv_stem']['conv']['kernel']))
  with pytest.raises(FileNotFoundError, match='not found'):
    gj.convert.load_torch_checkpoint('ghostnet_050', str(tmp_path / 'nope.pth'))
