"""Host-side image preprocessing ops (TensorFlow, stateless RNG), composed from spec strings.

An op spec is ``name`` or ``name(arg, key=value)`` (Python literals); a pipeline is ops joined by
``|``, e.g. ``inception_crop(224)|flip_lr|normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))``
(mean/std are the model's, ``get_spec(name).mean/std``: :func:`train_spec` and :func:`eval_spec`
write them in). Each op is ``fn(image, seed) -> image``:
``image`` is the encoded string before the first decoding op and a ``uint8`` HWC tensor after it
(``normalize`` turns it into float32); ``seed`` is a stateless seed ``int64[2]`` that the
composer derives per op from the element's seed, so every example is augmented identically
however the pipeline is parallelised or resumed.

More ops plug in with :func:`register_op` (RandAugment, AutoAugment, random erasing live in
``ghostnets_jax.data.augment`` and are referenced from ``config.aug.ops`` / ``config.aug.post_ops``).
"""
from __future__ import annotations

import ast
import functools
import math
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

Op = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
_OPS: dict[str, Callable[..., Op]] = {}
INTERPOLATIONS = {'bilinear': 'bilinear', 'bicubic': 'bicubic', 'nearest': 'nearest',
                  'area': 'area', 'lanczos': 'lanczos3'}


def register_op(name: str) -> Callable[[Callable[..., Op]], Callable[..., Op]]:
  """Registers an op factory ``factory(*args, **kwargs) -> fn(image, seed) -> image``."""
  def deco(factory: Callable[..., Op]) -> Callable[..., Op]:
    if name in _OPS:
      raise ValueError(f'preprocessing op {name!r} is registered twice')
    _OPS[name] = factory
    return factory
  return deco


def list_ops() -> list[str]:
  return sorted(_OPS)


def parse_op(spec: str) -> tuple[str, tuple, dict]:
  """``'name(1, a=2)'`` -> ``('name', (1,), {'a': 2})``."""
  spec = spec.strip()
  try:
    node = ast.parse(spec, mode='eval').body
  except SyntaxError as e:
    raise ValueError(f'bad preprocessing op spec {spec!r}: {e.msg}') from e
  if isinstance(node, ast.Name):
    return node.id, (), {}
  if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
    raise ValueError(f'bad preprocessing op spec {spec!r}: expected name or name(args)')
  try:
    args = tuple(ast.literal_eval(a) for a in node.args)
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
  except ValueError as e:
    raise ValueError(f'bad preprocessing op spec {spec!r}: arguments must be literals') from e
  return node.func.id, args, kwargs


def get_op(spec: str) -> Op:
  name, args, kwargs = parse_op(spec)
  if name not in _OPS:
    raise ValueError(f'unknown preprocessing op {name!r} in {spec!r}; registered ops: {list_ops()}')
  return _OPS[name](*args, **kwargs)


def split_spec(spec: str) -> list[str]:
  """Splits ``a|b(1, 'x|y')|c`` at top-level ``|`` (not inside brackets or strings)."""
  parts, depth, quote, cur = [], 0, None, ''
  for ch in spec:
    if quote:
      quote = None if ch == quote else quote
    elif ch in '\'"':
      quote = ch
    elif ch in '([{':
      depth += 1
    elif ch in ')]}':
      depth -= 1
    elif ch == '|' and depth == 0:
      parts.append(cur)
      cur = ''
      continue
    cur += ch
  parts.append(cur)
  return [p.strip() for p in parts if p.strip()]


def compose(spec: str | Sequence[str]) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
  """One function ``(image, seed) -> image`` running the ops of ``spec`` in order."""
  specs = split_spec(spec) if isinstance(spec, str) else [s for s in spec if s.strip()]
  ops = [get_op(s) for s in specs]

  def run(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    for i, op in enumerate(ops):
      image = op(image, tf.random.experimental.stateless_fold_in(seed, i))
    return image
  return run


def _resize(image: tf.Tensor, size: Sequence[int] | tf.Tensor, interpolation: str) -> tf.Tensor:
  """Resize like PIL (antialiased when shrinking), rounded back to uint8."""
  if interpolation not in INTERPOLATIONS:
    raise ValueError(f'interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}')
  # The antialiased kernels read uint8 directly (converting to float as they go, same results):
  # casting the whole crop to float32 first costs a pass over it. Nearest keeps the input dtype.
  if interpolation == 'nearest':
    image = tf.cast(image, tf.float32)
  out = tf.image.resize(image, size, method=INTERPOLATIONS[interpolation],
                        antialias=interpolation != 'nearest')
  return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)


def _decode(image: tf.Tensor) -> tf.Tensor:
  if image.dtype == tf.uint8:
    return image
  img = tf.io.decode_image(image, channels=3, expand_animations=False)
  img.set_shape([None, None, 3])
  return img


@register_op('decode')
def decode() -> Op:
  """Encoded JPEG/PNG (or a uint8 image) -> uint8 RGB; grayscale becomes 3 channels."""
  return lambda image, seed: _decode(image)


@register_op('inception_crop')
def inception_crop(size: int, scale: Sequence[float] = (0.08, 1.0),
                   ratio: Sequence[float] = (3 / 4, 4 / 3), interpolation: str = 'bilinear') -> Op:
  """Random-resized crop (Inception): area fraction in ``scale``, aspect in ``ratio``, then
  resize to ``size``; falls back to the whole image after 10 attempts. JPEGs are decoded only
  inside the crop window."""
  def op(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    def box(shape):
      begin, sz, _ = tf.image.stateless_sample_distorted_bounding_box(
          shape, tf.zeros([0, 0, 4], tf.float32), seed=seed, min_object_covered=0.0,
          aspect_ratio_range=tuple(ratio), area_range=tuple(scale), max_attempts=10,
          use_image_if_no_bounding_boxes=True)
      return begin, sz

    if image.dtype == tf.uint8:
      begin, sz = box(tf.shape(image))
      crop = tf.slice(image, begin, sz)
    else:
      def jpeg():
        begin, sz = box(tf.image.extract_jpeg_shape(image))
        window = tf.stack([begin[0], begin[1], sz[0], sz[1]])
        return tf.image.decode_and_crop_jpeg(image, window, channels=3)

      def other():
        img = _decode(image)
        begin, sz = box(tf.shape(img))
        return tf.slice(img, begin, sz)
      crop = tf.cond(tf.io.is_jpeg(image), jpeg, other)
    crop.set_shape([None, None, 3])
    return _resize(crop, (size, size), interpolation)
  return op


@register_op('flip_lr')
def flip_lr(p: float = 0.5) -> Op:
  """Horizontal flip with probability ``p``."""
  def op(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    flip = tf.random.stateless_uniform([], seed) < p
    return tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
  return op


@register_op('resize_crop')
def resize_crop(size: int, crop_pct: float = 0.875, interpolation: str = 'bicubic') -> Op:
  """Eval transform (timm): resize the shorter side to ``size / crop_pct``, centre-crop ``size``."""
  scale_size = int(math.floor(size / crop_pct))

  def op(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    del seed
    img = _decode(image)
    shape = tf.shape(img)[:2]
    short = tf.reduce_min(shape)
    # timm: scale_size = floor(size / crop_pct); torchvision Resize: long = int(scale * long / short)
    new = (scale_size * shape) // short
    new = tf.maximum(new, size)
    img = _resize(img, new, interpolation)
    top = (new[0] - size + 1) // 2   # torchvision center_crop rounds the offset
    left = (new[1] - size + 1) // 2
    out = tf.slice(img, [top, left, 0], [size, size, 3])
    out.set_shape([size, size, 3])
    return out
  return op


@register_op('normalize')
def normalize(mean: Sequence[float], std: Sequence[float]) -> Op:
  """uint8 [0, 255] -> float32 ``(x / 255 - mean) / std`` (the model's ``get_spec(name).mean/std``)."""
  m = np.asarray(mean, np.float32) * np.float32(255.)
  s = np.asarray(std, np.float32) * np.float32(255.)
  # One XLA-compiled loop instead of three full-image TF kernels (cast, subtract, divide with
  # broadcasting): ~7x less CPU per image, the same float32 operations and results. mean and
  # std are arguments, not constants: XLA turns a division by a constant into a multiplication
  # by its reciprocal, which rounds differently.
  return lambda image, seed: _normalize(image, tf.constant(m), tf.constant(s))


@functools.partial(tf.function, jit_compile=True, autograph=False)
def _normalize(image, m, s):
  return (tf.cast(image, tf.float32) - m) / s


@register_op('timm_augment')
def timm_augment(spec: str, size: int, mean: Sequence[float], interpolation: str = 'random') -> Op:
  """timm's ``--aa`` string (``rand-m9-mstd0.5``, ``original``, ``v0``, ...) on the uint8 crop:
  RandAugment / AutoAugment of :mod:`ghostnets_jax.data.augment`, fill colour = ``mean``."""
  from ghostnets_jax.data import augment
  fn = augment.build_train_ops(spec, size, mean=tuple(mean), interpolation=interpolation)
  return lambda image, seed: fn(image, tf.cast(seed, tf.int64))


@register_op('color_jitter')
def color_jitter(brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.0) -> Op:
  """timm's ``--color-jitter`` (torchvision ``ColorJitter`` on the uint8 crop: the four
  adjustments in random order, PIL semantics), :func:`ghostnets_jax.data.augment.color_jitter`."""
  from ghostnets_jax.data import augment
  augment.color_jitter_ranges(brightness, contrast, saturation, hue)   # validate now
  return lambda image, seed: augment.color_jitter(image, tf.cast(seed, tf.int64), brightness,
                                                  contrast, saturation, hue)


def jitter_args(color_jitter: float | Sequence[float]) -> tuple[float, ...]:
  """timm's ``color_jitter`` argument: a number ``x`` is ``(x, x, x)`` (no hue); a tuple of 3
  or 4 is (brightness, contrast, saturation[, hue]); ``()`` is off."""
  if isinstance(color_jitter, (int, float)):
    return (float(color_jitter),) * 3 + (0.0,)
  values = tuple(float(v) for v in color_jitter)
  if len(values) not in (0, 3, 4):
    raise ValueError(f'color_jitter must be a number or (brightness, contrast, saturation[, hue]), '
                     f'got {color_jitter!r}.')
  return values + (0.0,) * (4 - len(values)) if values else (0.0,) * 4


@register_op('random_erasing')
def random_erasing(probability: float, mode: str = 'pixel', min_count: int = 1,
                   max_count: int | None = None) -> Op:
  """timm's ``--reprob/--remode/--recount`` random erasing, after normalisation."""
  from ghostnets_jax.data import augment
  fn = augment.build_random_erasing(probability, mode=mode, min_count=min_count,
                                    max_count=max_count)
  return lambda image, seed: fn(image, tf.cast(seed, tf.int64))


def train_spec(size: int, *, scale: Sequence[float], ratio: Sequence[float], interpolation: str,
               hflip: float, mean: Sequence[float], std: Sequence[float], auto_augment: str = '',
               color_jitter: float | Sequence[float] = 0.0, reprob: float = 0.0,
               remode: str = 'pixel', recount: int = 1, ops: str = '', post_ops: str = '') -> str:
  """The training pipeline: crop, flip, RandAugment/AutoAugment (``auto_augment``, a timm
  string) or else colour jitter (``color_jitter``, timm's rule: off under an ``--aa`` string),
  ``ops`` (more uint8 ops), normalise, random erasing (``reprob``), ``post_ops``."""
  parts = [f'inception_crop({size}, scale={tuple(scale)}, ratio={tuple(ratio)}, '
           f'interpolation={interpolation!r})']
  if hflip > 0:
    parts.append(f'flip_lr({hflip})')
  jitter = jitter_args(color_jitter)
  if auto_augment and auto_augment.lower() != 'none':
    parts.append(f'timm_augment({auto_augment!r}, {size}, {tuple(mean)})')
  elif any(jitter):
    parts.append(f'color_jitter{jitter}')
  parts += [ops, f'normalize({tuple(mean)}, {tuple(std)})']
  if reprob > 0:
    parts.append(f'random_erasing({reprob}, {remode!r}, max_count={recount})')
  parts.append(post_ops)
  return '|'.join(p for p in parts if p)


def eval_spec(size: int, *, crop_pct: float, interpolation: str, mean: Sequence[float],
              std: Sequence[float]) -> str:
  return (f'resize_crop({size}, crop_pct={crop_pct}, interpolation={interpolation!r})|'
          f'normalize({tuple(mean)}, {tuple(std)})')


def describe(spec: str) -> list[tuple[str, tuple, dict[str, Any]]]:
  return [parse_op(s) for s in split_spec(spec)]
