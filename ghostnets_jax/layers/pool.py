"""Pooling and resizing with PyTorch semantics."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def global_avg_pool(x: jax.Array, keepdims: bool = False) -> jax.Array:
  """Mean over H, W of NHWC ``x`` (accumulated in float32)."""
  return jnp.mean(x, axis=(1, 2), keepdims=keepdims, dtype=jnp.float32).astype(x.dtype)


def avg_pool_2x2(x: jax.Array) -> jax.Array:
  """``F.avg_pool2d(x, 2, 2)``: floors odd sizes (drops the last row/column)."""
  n, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def nearest_resize(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """``F.interpolate(x, size, mode='nearest')``: source index ``floor(i * in / out)``."""
  n, h, w, c = x.shape
  oh, ow = size
  if (oh, ow) == (h, w):
    return x
  if oh % h == 0 and ow % w == 0:
    return jnp.repeat(jnp.repeat(x, oh // h, axis=1), ow // w, axis=2)
  ih = (np.arange(oh) * h) // oh
  iw = (np.arange(ow) * w) // ow
  return x[:, ih][:, :, iw]


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """``nn.MaxPool2d(3, 2, padding=1)`` (the ResNet stem): padding never wins the max."""
  # A NumPy scalar init lets JAX recognise the max monoid (differentiable reduce_window_max);
  # a jnp array init under a trace is not, and the train step's gradient fails.
  return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                           ((0, 0), (1, 1), (1, 1), (0, 0)))
