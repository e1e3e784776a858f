"""BatchNorm with PyTorch semantics (eps 1e-5, momentum 0.1 == flax 0.9, unbiased running var).

Under ``jax.jit`` over a batch sharded across devices, the batch mean and variance are taken over
the *global* batch (XLA inserts the cross-device reductions): synchronised BN, as
``torch.nn.SyncBatchNorm``. :func:`batch_norm_groups` splits the batch into contiguous groups with
their own statistics instead (SyncBN with process groups; ``bn_group_size`` in the trainer).
:func:`frozen_batch_norm` makes every BatchNorm use its running statistics even in training mode
(fine-tuning with frozen BN, as detectron2's ``FrozenBatchNorm2d``).
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Iterator, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

_bn_num_groups = contextvars.ContextVar('ghostnets_jax_bn_num_groups', default=1)
_bn_frozen = contextvars.ContextVar('ghostnets_jax_bn_frozen', default=False)


@contextlib.contextmanager
def batch_norm_groups(num_groups: int) -> Iterator[None]:
  """Training-mode BatchNorm normalises each of ``num_groups`` contiguous batch slices by its own
  statistics (read at trace time, like ``depthwise_impl``: enter it inside the jitted function).

  With the batch sharded in order over ``D`` devices, ``num_groups = D // n`` gives per-group
  statistics over ``n`` neighbouring devices. The running statistics are updated with the mean of
  the groups' means and of their unbiased variances (timm's ``distribute_bn`` 'reduce').
  """
  if int(num_groups) != num_groups or num_groups < 1:
    raise ValueError(f'num_groups must be a positive integer, got {num_groups!r}')
  token = _bn_num_groups.set(int(num_groups))
  try:
    yield
  finally:
    _bn_num_groups.reset(token)


@contextlib.contextmanager
def frozen_batch_norm(frozen: bool = True) -> Iterator[None]:
  """Inside (``frozen=True``), BatchNorm normalises with its running statistics and leaves them
  unchanged, whatever ``train`` says (read at trace time: enter it inside the jitted function).
  Dropout and drop-path still follow ``train``."""
  token = _bn_frozen.set(bool(frozen))
  try:
    yield
  finally:
    _bn_frozen.reset(token)


class BatchNorm(nn.Module):
  """Batch normalisation over all axes but the last (NHWC or NC).

  Statistics are computed in float32 over the (global, when jitted over a sharded batch)
  batch, or per batch group inside :func:`batch_norm_groups`; running variance is updated with
  the unbiased estimate, as ``torch.nn.BatchNorm2d``.
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
    use_ra = use_ra or _bn_frozen.get()
    c = x.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    scale = self.param('scale', self.scale_init, (c,), self.param_dtype)
    bias = self.param('bias', self.bias_init, (c,), self.param_dtype)
    if use_ra:
      mean, var = ra_mean.value, ra_var.value
      return self._normalize(x, scale, bias, mean, var)
    groups = _bn_num_groups.get()
    shape = x.shape
    if shape[0] % groups:
      raise ValueError(f'{self.name}: batch of {shape[0]} does not split into {groups} BN '
                       'groups; make the batch size a multiple of the group count.')
    if groups > 1:   # (groups, per-group batch, ..., C): one set of statistics per group
      x = x.reshape((groups, shape[0] // groups) + shape[1:])
    stat_axes = tuple(range(int(groups > 1), x.ndim - 1))
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, stat_axes, keepdims=groups > 1)
    var = jnp.mean(jnp.square(xf - mean), stat_axes, keepdims=groups > 1)
    if not self.is_initializing():
      n = math.prod(x.shape[a] for a in stat_axes)   # examples per statistic
      m = self.momentum
      over_groups = lambda v: jnp.mean(v, tuple(range(v.ndim - 1))) if groups > 1 else v  # noqa: E731
      ra_mean.value = m * ra_mean.value + (1 - m) * over_groups(mean)
      ra_var.value = m * ra_var.value + (1 - m) * over_groups(var) * (n / max(n - 1, 1))
    return self._normalize(x, scale, bias, mean, var).reshape(shape)

  def _normalize(self, x, scale, bias, mean, var) -> jax.Array:
    mul = scale.astype(jnp.float32) * jax.lax.rsqrt(var + self.epsilon)
    add = bias.astype(jnp.float32) - mean * mul
    dtype = self.dtype or jnp.result_type(x.dtype, self.param_dtype)
    return x.astype(dtype) * mul.astype(dtype) + add.astype(dtype)
