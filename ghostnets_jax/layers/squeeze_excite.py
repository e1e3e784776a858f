"""Squeeze-and-Excitation with a configurable gate (GhostNet uses the hard sigmoid)."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ghostnets_jax.layers.activations import get_act
from ghostnets_jax.layers.conv import Conv2d


class SqueezeExcite(nn.Module):
  """``x * gate(conv_expand(act(conv_reduce(mean_hw(x)))))``; both 1x1 convs have biases."""
  rd_channels: int
  act: str = 'relu'
  gate: str = 'hard_sigmoid'
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = Conv2d(self.rd_channels, 1, use_bias=True, dtype=self.dtype, name='conv_reduce')(s)
    s = get_act(self.act)(s)
    s = Conv2d(x.shape[-1], 1, use_bias=True, dtype=self.dtype, name='conv_expand')(s)
    return x * get_act(self.gate)(s).astype(x.dtype)
