"""Activations and channel rounding shared by the Ghost family (PyTorch/timm semantics)."""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ghostnets_jax.layers.lowering import exporting


def hard_sigmoid(x: jax.Array) -> jax.Array:
  """relu6(x + 3) / 6, the gate of GhostNet's SE (timm ``hard_sigmoid``).

  Under :func:`~ghostnets_jax.layers.export_lowering` ``jax.nn.hard_sigmoid`` (the same function;
  one ``HardSigmoid`` node in ONNX instead of ``Add``, ``Clip`` and ``Div``).
  """
  if exporting():
    return jax.nn.hard_sigmoid(x)
  return jnp.clip(x + 3.0, 0.0, 6.0) / 6.0


def hard_swish(x: jax.Array) -> jax.Array:
  """x * relu6(x + 3) / 6 (torch ``nn.Hardswish``); one ``HardSwish`` node when exported."""
  if exporting():
    return jax.nn.hard_swish(x)
  return x * hard_sigmoid(x)


def relu(x: jax.Array) -> jax.Array:
  return jax.nn.relu(x)


def identity(x: jax.Array) -> jax.Array:
  return x


_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': relu,
    'relu6': jax.nn.relu6,
    'hard_sigmoid': hard_sigmoid,
    'hard_swish': hard_swish,
    'sigmoid': jax.nn.sigmoid,
    'silu': jax.nn.silu,
    'gelu': jax.nn.gelu,
    'identity': identity,
}


def get_act(name: Optional[str]) -> Callable[[jax.Array], jax.Array]:
  """Returns the activation called ``name`` (``None`` means identity)."""
  if name is None:
    return identity
  if name not in _ACTIVATIONS:
    raise ValueError(f'Unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}.')
  return _ACTIVATIONS[name]


def make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None,
                   round_limit: float = 0.9) -> int:
  """Rounds ``v`` to a multiple of ``divisor``, never below ``round_limit * v``."""
  min_value = min_value or divisor
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new_v < round_limit * v:
    new_v += divisor
  return new_v
