"""Fast variable initialisation.

``model.init`` traces the forward pass and draws every parameter with its own RNG stream; on
CPU, XLA spends most of the compile optimising hundreds of tiny random-number kernels that run
once. :func:`init_variables` compiles the same function with backend optimisations off on CPU
(about 3x faster to compile here, identical values).
"""
from __future__ import annotations

import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


def init_variables(model: nn.Module, input_shape: tuple[int, ...], rng: Optional[jax.Array] = None,
                   dtype: Any = jnp.float32, **kwargs: Any) -> dict:
  """``model.init(rng, zeros(input_shape), train=False)``, compiled for a one-off run."""
  rng = jax.random.PRNGKey(0) if rng is None else rng
  fn = jax.jit(functools.partial(model.init, train=False, **kwargs))
  x = jax.ShapeDtypeStruct(tuple(input_shape), dtype)
  lowered = fn.lower(rng, x)
  opts = {'xla_backend_optimization_level': 0} if jax.default_backend() == 'cpu' else None
  return lowered.compile(compiler_options=opts)(rng, jnp.zeros(input_shape, dtype))
