"""Registry API: listing, creation, errors, model_info."""
import jax.numpy as jnp
import pytest

import ghostnets_jax as gj


def test_list_models_and_patterns():
  names = gj.list_models()
  assert names == sorted(names) and len(names) == len(set(names))
  assert {'ghostnet_050', 'ghostnet_100', 'ghostnet_130', 'ghostnetv2_100', 'ghostnetv2_130',
          'ghostnetv2_160'} <= set(names)
  assert gj.list_models('ghostnetv2_*') == ['ghostnetv2_100', 'ghostnetv2_130', 'ghostnetv2_160']
  assert gj.list_models('no_such_*') == []


def test_unknown_model_lists_closest_names():
  with pytest.raises(ValueError, match=r"Unknown model 'ghostnet_10'.*Did you mean: .*ghostnet_100"):
    gj.create_model('ghostnet_10')
  with pytest.raises(ValueError, match='ghostnetv2_100'):
    gj.model_info('ghostnetv2-100')


def test_create_model_overrides_and_bad_override():
  m = gj.create_model('ghostnet_100', num_classes=10, drop_rate=0.5, dtype=jnp.bfloat16)
  assert (m.num_classes, m.drop_rate, m.dtype) == (10, 0.5, jnp.bfloat16)
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['dropout'\].*drop_rate"):
    gj.create_model('ghostnet_100', dropout=0.1)


def test_model_info_fields():
  info = gj.model_info('ghostnet_100')
  assert info['input_size'] == 224 and info['params'] == 5182508
  # GhostNet paper: 141M FLOPs (MACs) for 1.0x at 224 (conv/linear only)
  assert 140e6 < info['macs'] < 150e6
  assert info['top1'] == 73.9 and 'GhostNet' in info['paper']
  assert gj.model_info('ghostnetv2_100')['params'] == 6156908
