"""Shared test setup: a persistent XLA compilation cache shared by all test processes."""
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', str(ROOT / '.cache' / 'jax'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# Triton's LLVM (loaded by torchvision, and by torch._dynamo through timm or torch.optim) segfaults
# when it is loaded after TensorFlow (the input-pipeline tests import it); loaded first, both work.
# Test workers run both kinds of tests, so load the PyTorch side before anything else.
try:
  import torch  # noqa: E402,F401
  import torchvision  # noqa: E402,F401
  import triton._C.libtriton  # noqa: E402,F401
except ImportError:
  pass

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])
jax.config.update('jax_persistent_cache_min_compile_time_secs',
                  float(os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS']))


# Memory: a worker that keeps every group's models, variables and executables grows past 10 GB
# over the registry. Tests that share caches share an xdist group (run back to back on one
# worker), so the in-memory caches are dropped whenever the group changes; recompiles then come
# from the persistent cache on disk.
_current_group = [None]


def _group(item) -> str:
  mark = item.get_closest_marker('xdist_group')
  if mark is None:
    return item.module.__name__
  return str(mark.args[0] if mark.args else mark.kwargs.get('name'))


def _release_caches() -> None:
  import gc
  import sys
  for name, module in list(sys.modules.items()):
    if name.startswith(('tests.', 'test_')) and module is not None:
      for value in list(vars(module).values()):
        if callable(getattr(value, 'cache_clear', None)):
          value.cache_clear()
  jax.clear_caches()
  gc.collect()


def pytest_runtest_setup(item):
  group = _group(item)
  if _current_group[0] is not None and group != _current_group[0]:
    _release_caches()
  _current_group[0] = group



def pytest_configure(config):
  """Refuse ``--dist loadgroup`` where pytest-xdist cannot group: from pytest 9.2 its suffix on
  the node id is ignored, every test of a group goes to any worker, and each shared run and
  cache of a group is rebuilt on both workers, without any error."""
  if getattr(config.option, 'dist', 'no') != 'loadgroup' or hasattr(config, 'workerinput'):
    return
  import xdist

  def version(v):
    return tuple(int(p) for p in v.split('.')[:2])
  if version(pytest.__version__) >= (9, 2) and version(xdist.__version__) <= (3, 8):
    raise pytest.UsageError(
        f'--dist loadgroup does not group tests under pytest {pytest.__version__} with '
        f'pytest-xdist {xdist.__version__}; install the pytest of requirements-dev.txt (9.1.1)')
