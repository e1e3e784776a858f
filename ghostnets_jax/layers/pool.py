"""Pooling and resizing with PyTorch semantics."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ghostnets_jax.layers.lowering import exporting


def global_avg_pool(x: jax.Array, keepdims: bool = False) -> jax.Array:
  """Mean over H, W of NHWC ``x`` (accumulated in float32).

  Under :func:`~ghostnets_jax.layers.export_lowering` the mean is taken over the H, W axes of
  ``x`` in NCHW order, so the exporter's layout transpose after the last convolution cancels
  (one ``ReduceMean`` on the NCHW graph instead of ``Transpose`` + ``ReduceMean``).
  """
  if exporting():
    y = jnp.mean(x.transpose(0, 3, 1, 2), axis=(2, 3), keepdims=keepdims, dtype=jnp.float32)
    return (y.transpose(0, 2, 3, 1) if keepdims else y).astype(x.dtype)
  return jnp.mean(x, axis=(1, 2), keepdims=keepdims, dtype=jnp.float32).astype(x.dtype)


def avg_pool_2x2(x: jax.Array) -> jax.Array:
  """``F.avg_pool2d(x, 2, 2)``: floors odd sizes (drops the last row/column).

  Under :func:`~ghostnets_jax.layers.export_lowering` a VALID 2x2 ``reduce_window`` (one
  ``AveragePool`` node in ONNX); otherwise a reshape and mean (same numbers).
  """
  if exporting():
    return nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
  n, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def nearest_resize(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """``F.interpolate(x, size, mode='nearest')``: source index ``floor(i * in / out)``.

  Integer factors repeat rows and columns; under :func:`~ghostnets_jax.layers.export_lowering`
  every size is a gather with constant indices (a ``Gather`` node per axis in ONNX, with no
  shape arithmetic on the dynamic batch and no layout transposes left around it).
  """
  n, h, w, c = x.shape
  oh, ow = size
  if (oh, ow) == (h, w):
    return x
  if exporting():  # gathers on NCHW axes, so the exporter's layout transposes cancel
    x = jnp.take(x.transpose(0, 3, 1, 2), (np.arange(oh) * h) // oh, axis=2)
    return jnp.take(x, (np.arange(ow) * w) // ow, axis=3).transpose(0, 2, 3, 1)
  if oh % h == 0 and ow % w == 0:
    return jnp.repeat(jnp.repeat(x, oh // h, axis=1), ow // w, axis=2)
  ih = (np.arange(oh) * h) // oh
  iw = (np.arange(ow) * w) // ow
  return x[:, ih][:, :, iw]


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """``nn.MaxPool2d(3, 2, padding=1)`` (the ResNet stem): padding never wins the max.

  Under :func:`~ghostnets_jax.layers.export_lowering` an explicit ``-inf`` pad and a VALID flax
  ``max_pool`` (``Pad`` + ``MaxPool`` in ONNX: jax2onnx drops a padded max pool's padding)."""
  if exporting():
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    return nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding='VALID')
  # A NumPy scalar init lets JAX recognise the max monoid (differentiable reduce_window_max);
  # a jnp array init under a trace is not, and the train step's gradient fails.
  return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                           ((0, 0), (1, 1), (1, 1), (0, 0)))
