"""Convolutions with PyTorch padding semantics and backend-dispatched depthwise/pointwise kernels.

Padding is symmetric ``dilation * (k - 1) // 2`` per side, as in ``nn.Conv2d(padding=k//2)``
(not XLA's 'SAME', which pads asymmetrically for stride 2). Kernels are HWIO,
``(kh, kw, in_channels // groups, out_channels)``.

On CPU the convolutions run on oneDNN (:mod:`ghostnets_jax.layers.onednn`: an XLA FFI extension
built on first use; with both gradients 1.2-3.9x faster than the XLA forms below and 1.5-2.9x
PyTorch's NCHW calls of the same library on RegNet's and ResNet's 3x3 shapes, docs/benchmarks.md).
'auto' picks it on a single-device CPU backend for float32; GPU/TPU keep XLA's native
convolutions, and so do several CPU devices (the SPMD partitioner shards those).

Where oneDNN is not available (no compiler, no ``onednn-cpu-gomp``) or for other dtypes, the CPU
keeps faster forms of XLA's own: XLA's CPU depthwise convolution (``feature_group_count ==
channels``) is far slower than PyTorch's, so it is computed as a sum of ``kh * kw`` shifted,
strided slices times per-channel weights; a 1x1 convolution (``groups == 1``, no padding) is
1.1-1.9x faster on XLA:CPU as a matrix product over the channel axis (``dot_general``) than
through its convolution emitter; a grouped convolution with a few wide groups (RegNet's 3x3s: 2-21
groups of 48 channels) runs 2.2-2.8x faster as one dense convolution per group, concatenated. All
forms give the same numbers (tests/test_kernels.py, tests/test_onednn.py).

:class:`Conv2d` also takes its input as channel parts (a tuple whose concatenation along the
channels is the input, e.g. a C-Ghost module's intrinsic and ghost maps): the shift-and-add and
oneDNN depthwise kernels then convolve each part with its slice of the kernel and concatenate the
(strided, smaller) outputs. XLA:CPU fuses a concatenation, the cheap depthwise op that feeds it
and the next conv's zero padding into one loop that runs 3x slower than the same work unfused
(docs/benchmarks.md); the split form never builds the padded concatenation.

The shift-and-add kernel has hand-written gradients (``jax.custom_vjp``): the input gradient is
the same kernel applied to the output gradient with the flipped weights, the weight gradient one
variadic reduction over the activations; autodiff of the slices ran the training step's backward
several times slower (docs/benchmarks.md). Reverse mode only, as for oneDNN's: for forward-mode
derivatives (``jax.jvp``, ``jax.hessian``) trace under ``conv_kernels('native')``.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Any, Iterator, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ghostnets_jax.layers import onednn

IntPair = Union[int, Sequence[int]]
Parts = Union[jax.Array, Sequence[jax.Array]]
"""An array, or channel parts of one (their concatenation along the last axis)."""
DEPTHWISE_IMPLS = ('auto', 'native', 'shift_add', 'onednn')
POINTWISE_IMPLS = ('auto', 'native', 'dot', 'onednn')
GROUPED_IMPLS = ('auto', 'native', 'split', 'onednn')
_depthwise_impl = contextvars.ContextVar('ghostnets_jax_depthwise_impl', default='auto')
_pointwise_impl = contextvars.ContextVar('ghostnets_jax_pointwise_impl', default='auto')
_grouped_impl = contextvars.ContextVar('ghostnets_jax_grouped_impl', default='auto')

# He-normal with fan-out, the usual init for CNNs trained from scratch (torchvision/timm ResNets).
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


@contextlib.contextmanager
def _choose(var: contextvars.ContextVar, impls: tuple[str, ...], kind: str, impl: str) -> Iterator[None]:
  if impl not in impls:
    raise ValueError(f'{kind} impl must be one of {impls}, got {impl!r}.')
  token = var.set(impl)
  try:
    yield
  finally:
    var.reset(token)


def depthwise_impl(impl: str) -> contextlib.AbstractContextManager[None]:
  """Chooses the depthwise kernel while tracing: 'auto' (by backend), 'native', 'shift_add' or
  'onednn'.

  Read at trace time, like ``nn.logical_axis_rules``: jit a new function after changing it.
  """
  return _choose(_depthwise_impl, DEPTHWISE_IMPLS, 'depthwise', impl)


def pointwise_impl(impl: str) -> contextlib.AbstractContextManager[None]:
  """Chooses the 1x1-convolution kernel while tracing: 'auto' (by backend), 'native', 'dot' or
  'onednn'."""
  return _choose(_pointwise_impl, POINTWISE_IMPLS, 'pointwise', impl)


def grouped_impl(impl: str) -> contextlib.AbstractContextManager[None]:
  """Chooses the grouped-convolution kernel while tracing: 'auto', 'native', 'split' (a dense
  convolution per group) or 'onednn'. It also covers dense convolutions other than 1x1s."""
  return _choose(_grouped_impl, GROUPED_IMPLS, 'grouped', impl)


@contextlib.contextmanager
def conv_kernels(impl: str) -> Iterator[None]:
  """Sets every conv kernel choice at once: 'auto' (fast forms on CPU) or 'native' (XLA's convs)."""
  if impl not in ('auto', 'native'):
    raise ValueError(f"conv_kernels takes 'auto' or 'native', got {impl!r}.")
  with depthwise_impl(impl), pointwise_impl(impl), grouped_impl(impl):
    yield


def onednn_by_default() -> bool:
  """Whether 'auto' picks the oneDNN kernels: on a single-device CPU backend, when the extension
  is available (:mod:`ghostnets_jax.layers.onednn`). Several CPU devices (simulated or one per
  process) keep XLA's forms, which the SPMD partitioner shards."""
  return jax.default_backend() == 'cpu' and jax.device_count() == 1 and onednn.available()


def _resolve(var: contextvars.ContextVar, xla_cpu: str) -> str:
  """The choice in ``var``; for 'auto': 'native' off CPU, else oneDNN or the XLA CPU form."""
  impl = var.get()
  if impl != 'auto':
    return impl
  if jax.default_backend() != 'cpu':
    return 'native'
  return 'onednn' if onednn_by_default() else xla_cpu


def _use_onednn(x: jax.Array, kernel: jax.Array, padding: Sequence[tuple[int, int]]) -> bool:
  """'onednn' takes float32 and non-negative padding; other inputs take the XLA CPU form."""
  if not onednn.available():
    raise RuntimeError(f"conv impl 'onednn' is not available: {onednn.status()}. Use 'auto', or "
                       "install what the message names.")
  return onednn.supports(x, kernel, padding)


def resolve_depthwise_impl() -> str:
  return _resolve(_depthwise_impl, 'shift_add')


def resolve_pointwise_impl() -> str:
  return _resolve(_pointwise_impl, 'dot')


def resolve_grouped_impl() -> str:
  return _resolve(_grouped_impl, 'split')


def to_pair(v: IntPair) -> tuple[int, int]:
  if isinstance(v, int):
    return (v, v)
  v = tuple(int(i) for i in v)
  if len(v) != 2:
    raise ValueError(f'expected an int or a pair, got {v!r}')
  return v  # type: ignore[return-value]


def torch_padding(kernel_size: IntPair, dilation: IntPair = 1) -> tuple[tuple[int, int], ...]:
  """Symmetric padding of ``nn.Conv2d(padding=dilation*(k-1)//2)``."""
  k, d = to_pair(kernel_size), to_pair(dilation)
  return tuple((di * (ki - 1) // 2,) * 2 for ki, di in zip(k, d))


def depthwise_conv2d(x: jax.Array, kernel: jax.Array, strides: IntPair = 1,
                     padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0)),
                     dilation: IntPair = 1, impl: Optional[str] = None) -> jax.Array:
  """Depthwise conv of NHWC ``x`` with an HWIO kernel of shape ``(kh, kw, 1, C * m)``.

  Output channel ``o`` reads input channel ``o // m`` (PyTorch ``groups=C`` semantics).
  """
  impl = impl or resolve_depthwise_impl()
  sh, sw = to_pair(strides)
  dh, dw = to_pair(dilation)
  kh, kw, one, cout = kernel.shape
  cin = x.shape[-1]
  if one != 1 or cout % cin:
    raise ValueError(f'depthwise kernel {kernel.shape} does not fit {cin} input channels')
  if impl == 'native':
    return lax.conv_general_dilated(
        x, kernel, (sh, sw), tuple(padding), rhs_dilation=(dh, dw),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=cin)
  if impl == 'onednn':
    if _use_onednn(x, kernel, padding):
      return onednn.conv2d(x, kernel, (sh, sw), padding, (dh, dw), groups=cin)
    impl = 'shift_add'
  if impl != 'shift_add':
    raise ValueError(f'unknown depthwise impl {impl!r}; choose one of {DEPTHWISE_IMPLS}')
  mult = cout // cin
  if mult > 1:
    x = jnp.repeat(x, mult, axis=-1)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  return _shift_add_vjp(x, kernel, (sh, sw), padding, (dh, dw))


def _shift_add(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
               padding: tuple[tuple[int, int], ...], dilation: tuple[int, int]) -> jax.Array:
  """Depthwise conv (one output channel per input channel) as a sum of shifted, strided slices."""
  (sh, sw), (dh, dw) = strides, dilation
  kh, kw, _, c = kernel.shape
  x = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  h, w = x.shape[1], x.shape[2]
  ho = (h - dh * (kh - 1) - 1) // sh + 1
  wo = (w - dw * (kw - 1) - 1) // sw + 1
  out = None
  for i in range(kh):
    for j in range(kw):
      term = _tap(x, i * dh, j * dw, ho, wo, sh, sw) * kernel[i, j, 0]
      out = term if out is None else out + term
  return out


def _tap(x: jax.Array, i: int, j: int, ho: int, wo: int, sh: int, sw: int) -> jax.Array:
  """``x[:, i::sh, j::sw]`` cut to ``ho x wo``: the input rows/columns one kernel tap reads."""
  return lax.slice(x, (0, i, j, 0), (x.shape[0], i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1,
                                      x.shape[3]), (1, sh, sw, 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _shift_add_vjp(x, kernel, strides, padding, dilation):
  return _shift_add(x, kernel, strides, padding, dilation)


def _shift_add_fwd(x, kernel, strides, padding, dilation):
  return _shift_add(x, kernel, strides, padding, dilation), (x, kernel)


def _shift_add_bwd(strides, padding, dilation, res, g):
  """Gradients of the shift-and-add depthwise conv, each through the same fast form.

  Input: the output gradient, spread to the input grid (``sh - 1`` zeros between rows, as the
  stride skipped them) and padded so that a stride-1 shift-and-add conv with the flipped kernel
  gives exactly ``H x W`` (the "full" correlation, minus the forward's padding). Kernel: tap
  ``(i, j)`` is the sum over batch and positions of the output gradient times the input slice
  that tap read. Autodiff of the forward builds the same sums as one reduction per tap (one
  pass over the activations each) through a padded transpose of every slice; XLA:CPU runs that
  3-10x slower (docs/benchmarks.md).
  """
  x, kernel = res
  (sh, sw), (dh, dw) = strides, dilation
  kh, kw = kernel.shape[:2]
  (pt, _), (pl, _) = padding
  h, w = x.shape[1], x.shape[2]
  ho, wo = g.shape[1], g.shape[2]
  g_in = lax.pad(g, jnp.zeros((), g.dtype),
                 ((0, 0, 0), ((kh - 1) * dh - pt, h - 1 + pt - (ho - 1) * sh, sh - 1),
                  ((kw - 1) * dw - pl, w - 1 + pl - (wo - 1) * sw, sw - 1), (0, 0, 0)))
  dx = _shift_add(g_in, kernel[::-1, ::-1], (1, 1), ((0, 0), (0, 0)), dilation)
  xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  acc = jnp.promote_types(g.dtype, jnp.float32)   # bfloat16/float16 sums accumulate in float32
  products = [g.astype(acc) * _tap(xp, i * dh, j * dw, ho, wo, sh, sw).astype(acc)
              for i in range(kh) for j in range(kw)]
  # One variadic reduction: a single pass over g and x for all taps (separate sums take one pass
  # each), per image first (XLA:CPU splits that over images and threads), then over the batch.
  per_image = lax.reduce(products, [jnp.zeros((), acc)] * len(products),
                         lambda a, b: tuple(u + v for u, v in zip(a, b)), (1, 2))
  dk = jnp.stack(per_image).sum(1).reshape(kernel.shape).astype(kernel.dtype)
  return dx.astype(x.dtype), dk


_shift_add_vjp.defvjp(_shift_add_fwd, _shift_add_bwd)


def grouped_conv2d(x: jax.Array, kernel: jax.Array, strides: IntPair = 1,
                   padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0)), dilation: IntPair = 1,
                   groups: int = 1, impl: Optional[str] = None) -> jax.Array:
  """Convolution of NHWC ``x`` with an HWIO kernel ``(kh, kw, Cin // groups, Cout)`` in ``groups``
  groups; 'split' runs one dense convolution per group and concatenates the outputs."""
  impl = impl or resolve_grouped_impl()
  if impl not in ('native', 'split', 'onednn'):
    raise ValueError(f'unknown grouped impl {impl!r}; choose one of {GROUPED_IMPLS}')
  cin, cout = x.shape[-1], kernel.shape[-1]
  if cin % groups or cout % groups or kernel.shape[2] != cin // groups:
    raise ValueError(f'kernel {kernel.shape} with groups={groups} does not fit {cin} input channels')
  if impl == 'onednn':
    if _use_onednn(x, kernel, padding):
      return onednn.conv2d(x, kernel, to_pair(strides), padding, to_pair(dilation), groups)
    impl = 'split'
  conv = functools.partial(lax.conv_general_dilated, window_strides=to_pair(strides),
                           padding=tuple(tuple(p) for p in padding), rhs_dilation=to_pair(dilation),
                           dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  if impl == 'native' or groups == 1:
    return conv(x, kernel, feature_group_count=groups)
  ci, co = cin // groups, cout // groups
  return jnp.concatenate([conv(x[..., g * ci:(g + 1) * ci], kernel[..., g * co:(g + 1) * co])
                          for g in range(groups)], axis=-1)


def channels(x: Parts) -> int:
  """Channels of an array or of channel parts together."""
  return sum(p.shape[-1] for p in x) if isinstance(x, (tuple, list)) else x.shape[-1]


def join(x: Parts) -> jax.Array:
  """The array of channel parts ``x`` (``x`` itself if it is an array)."""
  if isinstance(x, (tuple, list)):
    return x[0] if len(x) == 1 else jnp.concatenate(x, axis=-1)
  return x


def depthwise_conv2d_parts(parts: Sequence[jax.Array], kernel: jax.Array, strides: IntPair = 1,
                           padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0)),
                           dilation: IntPair = 1, impl: Optional[str] = None) -> jax.Array:
  """``depthwise_conv2d(join(parts), ...)``; the shift-and-add and oneDNN kernels convolve part
  by part."""
  impl = impl or resolve_depthwise_impl()
  cin = channels(parts)
  if impl not in ('shift_add', 'onednn') or len(parts) == 1 or kernel.shape[-1] % cin:
    return depthwise_conv2d(join(parts), kernel, strides, padding, dilation, impl)
  mult, outs, start = kernel.shape[-1] // cin, [], 0
  for p in parts:
    c = p.shape[-1]
    outs.append(depthwise_conv2d(p, kernel[..., start * mult:(start + c) * mult], strides,
                                 padding, dilation, impl))
    start += c
  return jnp.concatenate(outs, axis=-1)


def pointwise_conv2d(x: jax.Array, kernel: jax.Array, strides: IntPair = 1,
                     impl: Optional[str] = None) -> jax.Array:
  """1x1 convolution (one group, no padding) of NHWC ``x`` with a ``(1, 1, Cin, Cout)`` kernel."""
  impl = impl or resolve_pointwise_impl()
  sh, sw = to_pair(strides)
  if kernel.shape[:2] != (1, 1) or kernel.shape[2] != x.shape[-1]:
    raise ValueError(f'pointwise kernel {kernel.shape} does not fit {x.shape[-1]} input channels')
  if impl == 'native':
    return lax.conv_general_dilated(x, kernel, (sh, sw), ((0, 0), (0, 0)),
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  if impl == 'onednn':
    if _use_onednn(x, kernel, ((0, 0), (0, 0))):
      return onednn.conv2d(x, kernel, (sh, sw), ((0, 0), (0, 0)))
    impl = 'dot'
  if impl != 'dot':
    raise ValueError(f'unknown pointwise impl {impl!r}; choose one of {POINTWISE_IMPLS}')
  if (sh, sw) != (1, 1):
    x = x[:, ::sh, ::sw]
  # As one (N*H*W, Cin) @ (Cin, Cout) product: the transpose that autodiff derives for the weight
  # gradient is then a 2-D product too, which XLA:CPU runs 1.5-3x faster than the same
  # contraction over the three leading axes of the 4-D arrays (docs/benchmarks.md).
  y = lax.dot_general(x.reshape(-1, x.shape[-1]), kernel[0, 0], (((1,), (0,)), ((), ())))
  return y.reshape(*x.shape[:-1], kernel.shape[-1])


class Conv2d(nn.Module):
  """2-D convolution, NHWC, HWIO kernel, PyTorch padding; depthwise uses the fast kernel.

  Attributes:
    features: output channels.
    kernel_size, strides, dilation: int or pair.
    padding: None for PyTorch's symmetric ``d*(k-1)//2``, or explicit ((top, bottom), (left, right)).
    groups: channel groups; ``groups == in_channels`` selects the depthwise kernel, an unpadded
      1x1 kernel with one group the pointwise one.
  The input may be an array or a tuple of channel parts (see the module docstring).
  """
  features: int
  kernel_size: IntPair = 1
  strides: IntPair = 1
  padding: Optional[Sequence[tuple[int, int]]] = None
  dilation: IntPair = 1
  groups: int = 1
  use_bias: bool = False
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Any = conv_kernel_init
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: Parts) -> jax.Array:
    parts = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    cin = channels(x)
    if cin % self.groups or self.features % self.groups:
      raise ValueError(f'{self.name}: channels in={cin} out={self.features} are not divisible '
                       f'by groups={self.groups}')
    kh, kw = to_pair(self.kernel_size)
    kernel = self.param('kernel', self.kernel_init, (kh, kw, cin // self.groups, self.features),
                        self.param_dtype)
    padding = self.padding if self.padding is not None else torch_padding((kh, kw), self.dilation)
    *parts, kernel = nn.dtypes.promote_dtype(*parts, kernel, dtype=self.dtype)
    if self.groups == cin and cin > 1:
      y = depthwise_conv2d_parts(parts, kernel, self.strides, padding, self.dilation)
    elif (kh, kw) == (1, 1) and self.groups == 1 and not any(any(p) for p in padding):
      y = pointwise_conv2d(join(parts), kernel, self.strides)
    else:
      y = grouped_conv2d(join(parts), kernel, self.strides, padding, self.dilation, self.groups)
    if self.use_bias:
      bias = self.param('bias', self.bias_init, (self.features,), self.param_dtype)
      y = y + bias.astype(y.dtype)
    return y
