"""Host memory that XLA:CPU reuses between calls instead of mapping it afresh every call.

XLA:CPU allocates the temporaries of each execution as one block (``compiled.memory_analysis()
.temp_size_in_bytes``: about 130 MiB for a batch-32 forward of repghostnet_100, 1.2 GiB for a
batch-32 training step of ghostnet_100) with ``posix_memalign`` from one of its worker threads, and
frees it when the call ends. glibc's malloc serves a block over 64 MiB to such a thread with a
fresh ``mmap`` (a thread's own arena cannot hold it) and ``munmap`` s it when it is freed, so every
call starts on fresh pages: the kernel maps and zeroes each 4 KiB page again. For the ghostnet_100
training step that is 300,000 page faults and 0.5-0.75 s of system time per step on a 2-core AMD
EPYC, a quarter to a third of the step's CPU time (docs/benchmarks.md).

:func:`retain_freed_memory` sets glibc's malloc (``mallopt``) so that every thread allocates from
the main arena (``M_ARENA_MAX`` 1), never through ``mmap`` (``M_MMAP_MAX`` 0), and freed memory
stays with the process (``M_TRIM_THRESHOLD``): the next call gets the same pages back, already
mapped. The process keeps the memory it has freed, and can hold several times the temporaries:
with one arena the order in which a call's buffers are allocated (which varies with thread
timing) decides whether they fit into the freed space, and the heap grows until they do. For a
call with 294 MiB of temporaries, resident memory stayed at 638 MiB in one process and grew to
1226 and 2401 MiB in two others, over 16 calls. The same setting from the environment, for any program:
``GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776``.

Call it before JAX runs its first computation: threads that already allocated keep their own
arenas. ``main.py`` applies it with ``--config.host_memory=retain``.

What it buys, measured (docs/benchmarks.md): with the convolutions on oneDNN
(:mod:`ghostnets_jax.layers.onednn`, the default on one CPU device) the faults and their system
time go and the user time grows by 0-15 %, less than the system time saved: on a 2-core AMD EPYC
the batch-32 training step took 765 instead of 1039 ms for ghostnet_100 and 6.7 instead of 7.3 s
for ghostnet_d_101, for resident memory about one block of temporaries larger (+0.7 and +3.0 GiB).
With XLA's own convolutions the user time grew by about what the faults had cost and the wall-clock
time did not change. On an Intel Xeon, where a fault cost 4 us instead of 2, the ghostnet_d_101 step
took 6.9 instead of 9.5 s. It is off by default: steps whose blocks glibc already reuses lose to
the one shared arena (the 32-pixel demo ran about 20 % slower), it cannot be applied once threads
have allocated (so not after the step's size is known), the retained heap can grow past one block
(above), and GPU and TPU hosts gain nothing. Transparent huge pages (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``,
where the kernel allows them on ``madvise``) keep the fresh pages but fault far fewer of them (one
per 2 MiB page); how much that saves depends on how fragmented the host's memory is (the kernel
compacts memory to find huge pages).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Optional

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_NEVER = -1                  # a trim threshold of -1 reads as SIZE_MAX in glibc: never trim (the
                             # largest positive int, 2 GiB, would still trim a 2 GiB+ training step)
HOST_MEMORY = ('default', 'retain')


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
        libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_NEVER))]
  return all(r == 1 for r in ok)


def configure(host_memory: str = 'default') -> bool:
  """Applies ``config.host_memory``: 'retain' (:func:`retain_freed_memory`) or 'default' (glibc's
  own behaviour, nothing changed). True if freed memory is now retained."""
  if host_memory not in HOST_MEMORY:
    from ghostnets_jax.errors import ConfigError
    raise ConfigError(f'config.host_memory={host_memory!r} is not one of {HOST_MEMORY} '
                      "(e.g. --config.host_memory=retain).")
  return host_memory == 'retain' and retain_freed_memory()
