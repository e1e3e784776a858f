"""oneDNN convolutions on XLA:CPU: the CPU kernel of dense, grouped and depthwise convolutions.

XLA:CPU (jaxlib 0.10) computes convolutions with its own loop or YNNPACK, and neither reaches
the speed of oneDNN, which PyTorch uses on CPU (``benchmarks/conv_peers.py``). This module
compiles a small XLA FFI extension (``csrc/onednn_conv.cc``, three handlers: the convolution and
its input and kernel gradients) against `oneDNN <https://github.com/uxlfoundation/oneDNN>`_ 3.2
from PyPI (``onednn-cpu-gomp`` and ``onednn-devel-cpu-gomp``, in requirements.txt) and calls it
with :func:`jax.ffi.ffi_call`. oneDNN reads and writes NHWC activations in place; the kernel
stays HWIO in the parameter pytree.

Built on first use with the C++ compiler (``$CXX``, else ``g++``, about 3 s) into
``$GHOSTNETS_JAX_CACHE`` (default ``$XDG_CACHE_HOME/ghostnets_jax``, else
``~/.cache/ghostnets_jax``), one file per source, jax and oneDNN version; nothing else is
written. Where it cannot be built (no compiler, no oneDNN) :func:`available` is False and
:class:`~ghostnets_jax.layers.Conv2d` keeps the XLA forms; :func:`status` says why.
``GHOSTNETS_JAX_ONEDNN=0`` turns it off; ``GHOSTNETS_JAX_ONEDNN_ROOT`` names another oneDNN
prefix (with ``lib/libdnnl.so.3`` and ``include/oneapi/dnnl/dnnl.hpp``).

Gradients: reverse mode to any order (each handler's gradients are the other handlers), float32
only. Forward mode (``jax.jvp``) is not defined: trace under ``conv_kernels('native')``.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc', 'onednn_conv.cc')
# FFI target name -> the handler's symbol in the built library.
TARGETS = {'ghostnets_onednn_conv': 'GhostnetsOnednnConvForward',
           'ghostnets_onednn_conv_input_grad': 'GhostnetsOnednnConvInputGrad',
           'ghostnets_onednn_conv_kernel_grad': 'GhostnetsOnednnConvKernelGrad'}
_LIB, _HEADER = os.path.join('lib', 'libdnnl.so.3'), os.path.join('include', 'oneapi', 'dnnl', 'dnnl.hpp')
_lock = threading.Lock()
_state: dict = {}


class Geometry(NamedTuple):
  """Strides, dilations, paddings ((top, bottom), (left, right)) and groups of a convolution."""
  strides: tuple[int, int]
  dilation: tuple[int, int]
  padding: tuple[tuple[int, int], tuple[int, int]]
  groups: int

  def attrs(self) -> dict:
    (sh, sw), (dh, dw), ((pt, pb), (pl, pr)) = self.strides, self.dilation, self.padding
    return {k: np.int64(v) for k, v in dict(sh=sh, sw=sw, dh=dh, dw=dw, pt=pt, pb=pb, pl=pl, pr=pr,
                                            groups=self.groups).items()}

  def out_shape(self, x_shape: Sequence[int], kernel_shape: Sequence[int]) -> tuple[int, ...]:
    n, h, w, _ = x_shape
    kh, kw, _, cout = kernel_shape
    sizes = [(size + lo + hi - d * (k - 1) - 1) // s + 1 for size, (lo, hi), d, k, s in
             zip((h, w), self.padding, self.dilation, (kh, kw), self.strides)]
    return (n, *sizes, cout)


def onednn_root() -> Optional[str]:
  """The prefix holding oneDNN's library and headers (``$GHOSTNETS_JAX_ONEDNN_ROOT``, else this
  Python's prefix, where the PyPI wheels put them), or None."""
  roots = [os.environ['GHOSTNETS_JAX_ONEDNN_ROOT']] if os.environ.get('GHOSTNETS_JAX_ONEDNN_ROOT') \
      else [sys.prefix, sys.base_prefix]
  for root in roots:
    if os.path.exists(os.path.join(root, _LIB)) and os.path.exists(os.path.join(root, _HEADER)):
      return root
  return None


def _build(root: str) -> str:
  """Compiles the extension into the cache (once per source, jax and oneDNN) and returns its path."""
  cxx = os.environ.get('CXX') or shutil.which('g++') or shutil.which('c++')
  if not cxx:
    raise RuntimeError('no C++ compiler: install g++ (e.g. `apt-get install g++`) or set $CXX')
  with open(SOURCE, 'rb') as f:
    source = f.read()
  lib = os.path.realpath(os.path.join(root, _LIB))
  key = hashlib.sha256(b'\0'.join([source, jax.__version__.encode(), lib.encode(),
                                   str(os.path.getmtime(lib)).encode()])).hexdigest()[:16]
  cache = os.environ.get('GHOSTNETS_JAX_CACHE') or os.path.join(
      os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'),
      'ghostnets_jax')
  out = os.path.join(cache, f'onednn_conv-{key}.so')
  if os.path.exists(out):
    return out
  os.makedirs(cache, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix='.so', dir=cache)
  os.close(fd)
  cmd = [cxx, '-O2', '-std=c++17', '-shared', '-fPIC', '-w', '-I', jax.ffi.include_dir(),
         '-I', os.path.join(root, 'include'), SOURCE, '-o', tmp, '-L', os.path.dirname(lib),
         '-l:libdnnl.so.3', f'-Wl,-rpath,{os.path.dirname(lib)}']
  try:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
      raise RuntimeError(f'{cxx} failed ({done.returncode}): {done.stderr.strip()[-2000:]}')
    os.replace(tmp, out)   # atomic: concurrent builders each write their own file
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return out


def _load() -> dict:
  with _lock:
    if _state:
      return _state
    if os.environ.get('GHOSTNETS_JAX_ONEDNN', '1') == '0':
      _state.update(ok=False, reason='turned off by GHOSTNETS_JAX_ONEDNN=0')
      return _state
    root = onednn_root()
    if root is None:
      _state.update(ok=False, reason='oneDNN not found: `pip install onednn-cpu-gomp==2023.2.0 '
                    'onednn-devel-cpu-gomp==2023.2.0` (or set GHOSTNETS_JAX_ONEDNN_ROOT)')
      return _state
    try:
      path = _build(root)
      lib = ctypes.CDLL(path)
      for target, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform='cpu')
    except (OSError, RuntimeError, AttributeError) as e:
      _state.update(ok=False, reason=f'the oneDNN extension could not be built or loaded: {e}')
      return _state
    _state.update(ok=True, reason=f'built {path} against oneDNN in {root}', lib=lib)
    return _state


def available() -> bool:
  """True when the extension is built and registered (builds it on the first call)."""
  return _load()['ok']


def status() -> str:
  """Why the oneDNN kernels are or are not available."""
  return _load()['reason']


def supports(x: jax.Array, kernel: jax.Array, padding: Sequence[tuple[int, int]]) -> bool:
  """Whether :func:`conv2d` takes these arguments: float32 NHWC, non-negative padding."""
  return (x.ndim == 4 and x.dtype == jnp.float32 and kernel.dtype == jnp.float32
          and all(int(p) >= 0 for pair in padding for p in pair))


def conv2d(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: Sequence[tuple[int, int]],
           dilation: tuple[int, int] = (1, 1), groups: int = 1) -> jax.Array:
  """``lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=dilation,
  dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=groups)`` by oneDNN."""
  if not available():
    raise RuntimeError(f'oneDNN convolutions are not available: {status()}')
  if not supports(x, kernel, padding):
    raise ValueError(f'oneDNN convolutions take float32 NHWC arrays and non-negative padding; got '
                     f'{x.dtype} {x.shape}, kernel {kernel.dtype}, padding {padding}')
  geo = Geometry(tuple(strides), tuple(dilation), tuple((int(a), int(b)) for a, b in padding),
                 int(groups))
  return _conv(x, kernel, geo, geo.out_shape(x.shape, kernel.shape))


def _call(target: str, shape: Sequence[int], a: jax.Array, b: jax.Array, geo: Geometry) -> jax.Array:
  out = jax.ShapeDtypeStruct(tuple(shape), jnp.float32)
  return jax.ffi.ffi_call(target, out, vmap_method='sequential')(a, b, **geo.attrs())


def _bilinear(target: str, grads):
  """Handler ``target`` as ``f(a, b, geo, out_shape)``, a :func:`jax.custom_vjp` whose cotangent
  rule is ``grads(geo, a, b, cotangent) -> (da, db)``."""
  @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
  def f(a, b, geo, out_shape):
    return _call(target, out_shape, a, b, geo)
  f.defvjp(lambda a, b, geo, out_shape: (f(a, b, geo, out_shape), (a, b)),
           lambda geo, out_shape, res, ct: grads(geo, *res, ct))
  return f


# The three handlers are bilinear; each one's gradients are the other two (and itself), so
# reverse mode works to any order.
_conv = _bilinear('ghostnets_onednn_conv', lambda geo, x, k, dy: (
    _input_grad(dy, k, geo, x.shape), _kernel_grad(x, dy, geo, k.shape)))
_input_grad = _bilinear('ghostnets_onednn_conv_input_grad', lambda geo, dy, k, ddx: (
    _conv(ddx, k, geo, dy.shape), _kernel_grad(ddx, dy, geo, k.shape)))
_kernel_grad = _bilinear('ghostnets_onednn_conv_kernel_grad', lambda geo, x, dy, ddk: (
    _input_grad(dy, ddk, geo, x.shape), _conv(x, ddk, geo, dy.shape)))
