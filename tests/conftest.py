"""Shared test setup: a persistent XLA compilation cache shared by all test processes."""
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', str(ROOT / '.cache' / 'jax'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# torchvision pulls in triton, which segfaults when it is loaded after TensorFlow: load the PyTorch
# reference first in every test process (test modules import both).
try:
  import torch  # noqa: E402,F401
  import torchvision  # noqa: E402,F401
except ImportError:
  pass

import jax  # noqa: E402

jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])
jax.config.update('jax_persistent_cache_min_compile_time_secs',
                  float(os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS']))
