"""Host memory that XLA:CPU reuses between calls instead of mapping it afresh every call.

XLA:CPU allocates the temporaries of each execution as one block (``compiled.memory_analysis()
.temp_size_in_bytes``: about 130 MiB for a batch-32 forward of repghostnet_100, 1.2 GiB for a
batch-32 training step of ghostnet_100) with ``posix_memalign`` from one of its worker threads, and
frees it when the call ends. glibc's malloc serves a block over 64 MiB to such a thread with a
fresh ``mmap`` (a thread's own arena cannot hold it) and ``munmap`` s it when it is freed, so every
call starts on fresh pages: the kernel maps and zeroes each 4 KiB page again. For the ghostnet_100
training step that is 300,000 page faults and 0.75 s of system time per step on an AMD EPYC, a
third of the step's CPU time (docs/benchmarks.md).

:func:`retain_freed_memory` sets glibc's malloc (``mallopt``) so that every thread allocates from
the main arena (``M_ARENA_MAX`` 1), never through ``mmap`` (``M_MMAP_MAX`` 0), and freed memory
stays with the process (``M_TRIM_THRESHOLD``): the next call gets the same pages back, already
mapped. The process keeps its peak host memory, which a training or serving loop needs at every
step anyway. The same setting from the environment, for any program:
``GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647``.

Call it before JAX runs its first computation: threads that already allocated keep their own
arenas. ``main.py`` applies it when the run uses the CPU backend (``config.host_memory``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import pkgutil
import sys
from typing import Optional

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_KEEP = 2 ** 31 - 1          # the largest trim threshold mallopt takes (an int): never trim
HOST_MEMORY = ('auto', 'retain', 'default')


def _libc() -> Optional[ctypes.CDLL]:
  if not sys.platform.startswith('linux'):
    return None
  try:
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
  except OSError:
    return None
  return libc if hasattr(libc, 'mallopt') and hasattr(libc, 'gnu_get_libc_version') else None


def retain_freed_memory() -> bool:
  """Makes glibc keep freed blocks for reuse (see the module docstring); True if it applied.

  False (nothing changed) off Linux/glibc (e.g. musl or macOS, whose allocators behave otherwise).
  """
  libc = _libc()
  if libc is None:
    return False
  ok = [libc.mallopt(_M_ARENA_MAX, 1), libc.mallopt(_M_MMAP_MAX, 0),
        libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_KEEP))]
  return all(r == 1 for r in ok)


def accelerator_installed() -> bool:
  """Whether a TPU or GPU plugin for JAX is installed (without starting any JAX backend)."""
  if importlib.util.find_spec('libtpu') is not None:
    return True
  return any(m.name.startswith(('jax_cuda', 'jax_rocm')) for m in pkgutil.iter_modules())


def cpu_backend_expected() -> bool:
  """Whether JAX will compute on the CPU: ``JAX_PLATFORMS`` names cpu first, or no accelerator
  plugin is installed. Reads no backend, so it can run before :func:`retain_freed_memory`."""
  import jax
  platforms = jax.config.jax_platforms or os.environ.get('JAX_PLATFORMS', '')
  if platforms:
    return platforms.split(',')[0].strip().lower() == 'cpu'
  return not accelerator_installed()


def configure(host_memory: str = 'auto') -> bool:
  """Applies ``config.host_memory``: 'retain' (always), 'auto' (on the CPU backend only: there
  XLA's temporaries live in host memory) or 'default' (glibc's own behaviour). True if retained."""
  if host_memory not in HOST_MEMORY:
    from ghostnets_jax.errors import ConfigError
    raise ConfigError(f'config.host_memory={host_memory!r} is not one of {HOST_MEMORY} '
                      "(e.g. --config.host_memory=auto).")
  if host_memory == 'default' or (host_memory == 'auto' and not cpu_backend_expected()):
    return False
  return retain_freed_memory()
