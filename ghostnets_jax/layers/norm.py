"""BatchNorm with PyTorch semantics (eps 1e-5, momentum 0.1 == flax 0.9, unbiased running var)."""
from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


class BatchNorm(nn.Module):
  """Batch normalisation over all axes but the last (NHWC or NC).

  Statistics are computed in float32 over the (global, when jitted over a sharded batch)
  batch; running variance is updated with the unbiased estimate, as ``torch.nn.BatchNorm2d``.
  Variables: params ``scale``, ``bias``; batch_stats ``mean``, ``var``.
  """
  use_running_average: Optional[bool] = None
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = None
  param_dtype: Any = jnp.float32
  scale_init: Any = nn.initializers.ones
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: Optional[bool] = None) -> jax.Array:
    use_ra = nn.merge_param('use_running_average', self.use_running_average, use_running_average)
    c = x.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    scale = self.param('scale', self.scale_init, (c,), self.param_dtype)
    bias = self.param('bias', self.bias_init, (c,), self.param_dtype)
    if use_ra:
      mean, var = ra_mean.value, ra_var.value
    else:
      axes = tuple(range(x.ndim - 1))
      xf = x.astype(jnp.float32)
      mean = jnp.mean(xf, axes)
      var = jnp.mean(jnp.square(xf - mean), axes)
      if not self.is_initializing():
        n = math.prod(x.shape[:-1])
        m = self.momentum
        ra_mean.value = m * ra_mean.value + (1 - m) * mean
        ra_var.value = m * ra_var.value + (1 - m) * var * (n / max(n - 1, 1))
    mul = scale.astype(jnp.float32) * jax.lax.rsqrt(var + self.epsilon)
    add = bias.astype(jnp.float32) - mean * mul
    dtype = self.dtype or jnp.result_type(x.dtype, self.param_dtype)
    return (x.astype(dtype) * mul.astype(dtype) + add.astype(dtype))
