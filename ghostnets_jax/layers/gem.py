"""Generalized-mean (GeM) pooling and L2 normalisation of embeddings (MultiGrain, arXiv:1902.05509)."""
from __future__ import annotations

from typing import Union

import flax.linen as nn
import jax
import jax.numpy as jnp


def gem_pool(x: jax.Array, p: Union[float, jax.Array] = 3.0, eps: float = 1e-6) -> jax.Array:
  """``mean_hw(clamp(x, eps) ** p) ** (1 / p)`` of NHWC ``x``, computed in float32.

  p = 1 is average pooling (of the clamped input), p -> inf approaches max pooling.
  """
  xf = jnp.maximum(x.astype(jnp.float32), eps)
  p = jnp.asarray(p, jnp.float32)
  return jnp.mean(xf ** p, axis=(1, 2)) ** (1.0 / p)


class GeM(nn.Module):
  """GeM pooling of NHWC features to ``(batch, channels)`` float32.

  Attributes:
    p: the exponent (its initial value when ``learnable``).
    learnable: ``p`` is a parameter (scalar ``params['p']``) trained with the network.
    eps: inputs are clamped to at least ``eps`` (so fractional powers stay finite).
  """
  p: float = 3.0
  learnable: bool = False
  eps: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    p = self.param('p', nn.initializers.constant(self.p), (), jnp.float32) if self.learnable else self.p
    return gem_pool(x, p, self.eps)


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """``x / (||x||_2 + eps)`` along the last axis (MultiGrain's ``l2n``)."""
  return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + eps)
