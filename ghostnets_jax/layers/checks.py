"""Input validation with messages that say what is wrong and how to fix it."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def check_images(x: jax.Array, in_chans: int, model: str, min_size: int = 1) -> None:
  """Raises ``ValueError`` unless ``x`` is a float NHWC batch with ``in_chans`` channels."""
  shape = tuple(getattr(x, 'shape', ()))
  if len(shape) != 4:
    hint = ' Add a batch axis with x[None].' if len(shape) == 3 else ''
    raise ValueError(f'{model}: expected images of shape (batch, height, width, {in_chans}) '
                     f'(NHWC), got shape {shape}.{hint}')
  if shape[-1] != in_chans:
    hint = (' This looks like NCHW (PyTorch layout); use x.transpose(0, 2, 3, 1).'
            if shape[1] == in_chans else '')
    raise ValueError(f'{model}: expected {in_chans} channels in the last axis (NHWC), got shape '
                     f'{shape}.{hint}')
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f'{model}: expected floating-point images, got dtype {x.dtype}. Convert and '
                     'normalise first, e.g. (x / 255 - mean) / std as float32.')
  if min(shape[1:3]) < min_size:
    raise ValueError(f'{model}: images of {shape[1]}x{shape[2]} are too small; use at least '
                     f'{min_size}x{min_size}.')
