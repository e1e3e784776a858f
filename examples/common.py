"""What the examples share: weights (random or a checkpoint file) and image loading."""
from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

import numpy as np

import ghostnets_jax as gj
from ghostnets_jax.initialize import init_variables

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def add_model_args(p: argparse.ArgumentParser, default_model: str) -> None:
  p.add_argument('--model', default=default_model, help='registry name (ghostnets_jax.list_models())')
  p.add_argument('--checkpoint', default=None,
                 help='weights: a PyTorch .pth/.pt/.bin or .safetensors file (converted with '
                      'ghostnets_jax.convert) or a .msgpack of flax {params, batch_stats}; '
                      'random weights when omitted')
  p.add_argument('--size', type=int, default=None, help="input size (default: the model's)")


def load_variables(name: str, model, checkpoint: Optional[str], size: int) -> dict:
  """``{'params', 'batch_stats'}`` of ``model`` from ``checkpoint``, or random (seed 0)."""
  if checkpoint is None:
    print(f'{name}: random weights (pass --checkpoint for trained ones)')
    return init_variables(model, (1, size, size, model.in_chans))
  if checkpoint.endswith('.msgpack'):
    from flax import serialization
    with open(checkpoint, 'rb') as f:
      variables = serialization.msgpack_restore(f.read())
    if 'params' not in variables:
      raise ValueError(f"{checkpoint}: expected a dict with 'params' (and 'batch_stats'), got "
                       f'keys {sorted(variables)}.')
  else:
    variables = gj.convert.load_torch_checkpoint(name, checkpoint)
  print(f'{name}: weights from {checkpoint}')
  return variables


def image_paths(items: Sequence[str]) -> list[str]:
  """Files as given; directories expand to their image files, sorted."""
  paths = []
  for item in items:
    if os.path.isdir(item):
      paths += sorted(os.path.join(item, f) for f in os.listdir(item)
                      if f.lower().endswith(IMAGE_EXTENSIONS))
    elif os.path.isfile(item):
      paths.append(item)
    else:
      raise FileNotFoundError(f'no such image file or folder: {item}')
  if not paths:
    raise ValueError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in {list(items)}')
  return paths


def load_images(paths: Sequence[str], name: str, size: int) -> np.ndarray:
  """Eval preprocessing of the model's spec: resize the short side to ``size / crop_pct``,
  centre crop ``size``, scale to [0, 1], normalise by mean/std. ``(n, size, size, 3)`` float32."""
  from PIL import Image
  spec = gj.get_spec(name)
  resample = Image.BICUBIC if spec.interpolation == 'bicubic' else Image.BILINEAR
  short = int(round(size / spec.crop_pct))
  out = []
  for path in paths:
    with Image.open(path) as im:
      im = im.convert('RGB')
      w, h = im.size
      scale = short / min(w, h)
      im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), resample)
      left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
      out.append(np.asarray(im.crop((left, top, left + size, top + size)), np.float32) / 255.0)
  return ((np.stack(out) - np.asarray(spec.mean)) / np.asarray(spec.std)).astype(np.float32)


def random_images(n: int, size: int, seed: int = 0) -> np.ndarray:
  """Smooth random images (low-frequency noise, upsampled), already normalised-looking."""
  rng = np.random.RandomState(seed)
  coarse = rng.normal(0, 1, (n, size // 8 + 1, size // 8 + 1, 3)).astype(np.float32)
  return np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)[:, :size, :size]
