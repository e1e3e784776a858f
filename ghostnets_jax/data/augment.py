"""Host-side image augmentation as TensorFlow ops: RandAugment, AutoAugment, random erasing.

The semantics are timm's (`timm/data/auto_augment.py`, `random_erasing.py`), which run on PIL
images; these run inside a `tf.data` map, so they scale with the host's CPUs, and are
deterministic given a seed (stateless random ops only). Every op also runs eagerly.

Entry points for the input pipeline:

  mean = ghostnets_jax.get_spec(model_name).mean                     # the model's normalisation
  train_ops = build_train_ops('rand-m9-mstd0.5', img_size=224, mean=mean)  # or 'original', ...
  image = train_ops(image_uint8_hwc, seed)                            # seed: int32/int64 tensor [2]

  erase = build_random_erasing(probability=0.2, mode='pixel')         # after normalisation
  image = erase(image_float_hwc, seed)

Spec strings are timm's: `rand-m{M}-n{N}-p{P}-mstd{S}-mmax{X}-inc{0|1}` for RandAugment (any order
after `rand`), `{original|originalr|v0|v0r}[-mstd{S}]` for AutoAugment's ImageNet policies.
`build_train_ops` mirrors timm's `create_transform`: the fill colour of geometric ops is the
dataset mean in uint8 (`img_mean`), absolute translations use `int(0.45 * img_size)`, and the
resampling filter is bilinear or bicubic at random unless `interpolation` names one.

A seed per image in tf.data: `ds.enumerate().map(lambda i, x: f(x, tf.stack([base_seed, i])))`, or
zip with `tf.data.Dataset.random(seed).batch(2)`. Sub-seeds are derived with
`tf.random.experimental.stateless_split`, so one seed drives every decision in the chain.

The single ops (`rotate`, `shear_x`, `translate_x`, `posterize`, `solarize`, `equalize`, ...)
take a uint8 HWC image and return one. They follow PIL's C code operation by operation (float64
warps, float32 blends, truncation to uint8), so the integer ops are bit-exact and the float ops
differ by at most one level on a few pixels where a compiler fuses a multiply-add (tested per op
against timm's PIL functions on photographs, see tests/test_augment.py).

Cost: the op cores are XLA-compiled once per image shape (one shape in a training pipeline);
tracing a RandAugment/AutoAugment map takes a few seconds once, at pipeline construction.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
from typing import Callable, Sequence

import tensorflow as tf

__all__ = [
  'AugmentSpec', 'parse_spec', 'build_train_ops', 'rand_augment',
  'auto_augment', 'auto_augment_policy', 'apply_op', 'level_to_arg', 'named_op', 'Hparams',
  'OP_NAMES', 'GEOMETRIC_OPS', 'RAND_TRANSFORMS', 'RAND_INCREASING_TRANSFORMS',
  'random_erasing', 'build_random_erasing',
  'affine', 'rotate', 'shear_x', 'shear_y', 'translate_x', 'translate_y', 'translate_x_rel',
  'translate_y_rel', 'auto_contrast', 'equalize', 'invert', 'posterize', 'solarize',
  'solarize_add', 'color', 'contrast', 'brightness', 'sharpness', 'blend', 'to_grayscale',
  'fill_rectangle', 'cutout', 'hue', 'color_jitter', 'color_jitter_ranges', 'color_jitter_params',
  'apply_color_jitter',
]

LEVEL_DENOM = 10.  # magnitude M maps to level M / 10 of each op's range (timm's _LEVEL_DENOM)
INTERPOLATIONS = ('nearest', 'bilinear', 'bicubic')

Image = tf.Tensor
Seed = tf.Tensor


# ---------------------------------------------------------------------------------------------
# Input checks and seeds
# ---------------------------------------------------------------------------------------------

def _check_image(image, name: str = 'image') -> tf.Tensor:
  image = tf.convert_to_tensor(image)
  if image.dtype != tf.uint8:
    raise TypeError(f'{name} must be uint8 (HWC, values 0..255), got {image.dtype.name}; apply the '
                    'augmentation before converting to float / normalising.')
  if image.shape.rank != 3:
    raise ValueError(f'{name} must be one HWC image of rank 3, got shape {image.shape}; map the '
                     'augmentation over the dataset before batching.')
  return image


def _check_seed(seed) -> tf.Tensor:
  seed = tf.convert_to_tensor(seed)
  if seed.dtype not in (tf.int32, tf.int64) or seed.shape.rank != 1 or seed.shape[0] not in (2, None):
    raise ValueError(f'seed must be an int32/int64 tensor of shape [2], got {seed.dtype.name} '
                     f'{seed.shape}; e.g. tf.stack([base_seed, example_index]).')
  return seed


def _split(seed, n: int) -> list[tf.Tensor]:
  seeds = tf.random.experimental.stateless_split(seed, n)
  return [seeds[i] for i in range(n)]


def _uniform(seed, shape=(), minval=0., maxval=1., dtype=tf.float32):
  return tf.random.stateless_uniform(shape, seed, minval, maxval, dtype=dtype)


def _jit(fn):
  """Compile an op's core with XLA: one fused loop nest instead of dozens of full-image TF
  kernels (3-8x faster on CPU, bit-identical results). Compiled per image shape, so a training
  pipeline at a fixed size compiles each op once; arguments are tensors, never retrace keys."""
  return tf.function(fn, jit_compile=True, autograph=False)


def _fill_vector(fill, channels) -> tf.Tensor:
  fill = _one(fill)
  return tf.broadcast_to(tf.reshape(fill, [-1]), [channels]) if fill.shape.rank == 0 else \
    tf.reshape(fill, [channels])


# ---------------------------------------------------------------------------------------------
# Geometric ops: PIL's Image.transform(AFFINE) sampling, written out
# ---------------------------------------------------------------------------------------------

def _one(v):
  """A float64 scalar/tensor; Python numbers go straight to float64 (never through float32)."""
  return tf.cast(v, tf.float64) if tf.is_tensor(v) else tf.convert_to_tensor(v, tf.float64)


def _cubic(v1, v2, v3, v4, d):
  # PIL's BICUBIC macro (Geometry.c): Keys' cubic convolution with a = -1, in this exact order.
  p1 = v2
  p2 = -v1 + v3
  p3 = 2 * (v1 - v2) + v3 - v4
  p4 = -v1 + v2 - v3 + v4
  return p1 + d * (p2 + d * (p3 + d * p4))


def affine(image, matrix, fill=(128, 128, 128), interpolation: str = 'bilinear') -> Image:
  """PIL `Image.transform(size, Image.AFFINE, matrix, resample, fillcolor=fill)` as TF ops.

  Output pixel (x, y) samples the input at (a x' + b y' + c, d x' + e y' + f), x' = x + 0.5,
  y' = y + 0.5 (pixel centres), for `matrix = (a, b, c, d, e, f)`. Samples outside the image
  take `fill`; inside, neighbours are clamped to the edge; bilinear/bicubic results are
  truncated to uint8 as PIL does (bicubic clipped to 0..255 first). Computed in float64 with
  PIL's operation order, so results are PIL's to the bit.

  Matrices that keep one axis on whole pixels (d = 0, e = 1, f an integer: shears along x,
  horizontal translations; or a = 1, b = 0, c an integer: shears along y, vertical translations)
  take a cheaper exact path: there PIL's interpolation weight along that axis is exactly 0, so
  its second interpolation pass returns its input unchanged and only the taps along the other
  axis are read (2 bilinear / 4 bicubic per pixel instead of 4 / 16).
  """
  image = _check_image(image)
  if interpolation not in INTERPOLATIONS:
    raise ValueError(f'interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}')
  m, fill = _one(matrix), _fill_vector(fill, tf.shape(image)[2])
  # The products a x', d x' (per column) and b y', e y' (per row) are taken here, outside XLA:
  # inside, the compiler may fuse a x' + b y' into one multiply-add (a single rounding where PIL
  # rounds twice), which moves a sample by one level now and then.
  shape = tf.shape(image)
  xc = tf.cast(tf.range(shape[1]), tf.float64) + 0.5
  yc = tf.cast(tf.range(shape[0]), tf.float64) + 0.5
  cols = tf.stack([m[0] * xc, m[3] * xc])             # (2, W)
  rows = tf.stack([m[1] * yc, m[4] * yc])             # (2, H)
  args = (image, cols, rows, tf.stack([m[2], m[5]]), fill)
  if interpolation == 'nearest':
    return _WARPS['nearest'](*args)
  general, along_rows, along_cols = _WARPS[interpolation]
  whole = lambda v: tf.equal(v, tf.round(v))  # noqa: E731
  path = tf.where((m[3] == 0.) & (m[4] == 1.) & whole(m[5]), 1,
                  tf.where((m[0] == 1.) & (m[1] == 0.) & whole(m[2]), 2, 0))
  return tf.switch_case(path, [lambda: general(*args), lambda: along_rows(*args),
                               lambda: along_cols(*args)])


_TAPS = {'bilinear': (0, 1), 'bicubic': (-1, 0, 1, 2)}


def _coordinates(cols, rows, offsets):
  """PIL's xin = a x' + b y' + c, yin = d x' + e y' + f from the products, (H, W) float64."""
  xin = cols[0][None, :] + rows[0][:, None] + offsets[0]
  yin = cols[1][None, :] + rows[1][:, None] + offsets[1]
  return xin, yin


def _floor_frac(v):
  """PIL's `x = FLOOR(v - 0.5); dx = (v - 0.5) - x` (int32, float64[..., None])."""
  v = v - 0.5
  v0 = tf.floor(v)
  return tf.cast(v0, tf.int32), (v - v0)[..., None]


def _interpolate(taps, d, interpolation):
  """PIL's BILINEAR (a + (b - a) d) or BICUBIC macro over consecutive taps."""
  if interpolation == 'bilinear':
    return taps[0] + (taps[1] - taps[0]) * d
  return _cubic(*taps, d)


def _finish(out, xin, yin, fill, interpolation):
  """Clip (bicubic), truncate, fill samples outside [0, W) x [0, H), uint8."""
  h, w = tf.shape(xin)[0], tf.shape(xin)[1]
  if interpolation == 'bicubic':
    out = tf.clip_by_value(out, 0., 255.)
  if interpolation != 'nearest':
    out = tf.floor(out)
  valid = (xin >= 0.) & (xin < tf.cast(w, tf.float64)) & (yin >= 0.) & (yin < tf.cast(h, tf.float64))
  return tf.cast(tf.where(valid[..., None], out, fill[None, None, :]), tf.uint8)


def _warp(image, cols, rows, offsets, fill, interpolation):
  """Any affine matrix: per output pixel, PIL's taps around (xin, yin), one gather per tap."""
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  xin, yin = _coordinates(cols, rows, offsets)
  flat = tf.reshape(image, [-1, shape[2]])
  pixels = lambda y, x: tf.cast(tf.gather(flat, y * w + x), tf.float64)  # noqa: E731
  if interpolation == 'nearest':
    out = pixels(tf.clip_by_value(tf.cast(yin, tf.int32), 0, h - 1),
                 tf.clip_by_value(tf.cast(xin, tf.int32), 0, w - 1))
  else:
    (x0, dx), (y0, dy) = _floor_frac(xin), _floor_frac(yin)
    taps = _TAPS[interpolation]
    xs = [tf.clip_by_value(x0 + i, 0, w - 1) for i in taps]
    out = _interpolate([_interpolate([pixels(tf.clip_by_value(y0 + j, 0, h - 1), x) for x in xs],
                                     dx, interpolation) for j in taps], dy, interpolation)
  return _finish(out, xin, yin, fill, interpolation)


def _along_rows(image, xin, yin, fill, interpolation):
  """Every yin - 0.5 a whole number: output row y samples one input row. PIL's dy is then 0 and
  its vertical pass (v1 + (v2 - v1) * 0, or the bicubic p1 + 0 * (...)) returns the horizontal
  result unchanged, so only the horizontal taps are read."""
  shape = tf.shape(image)
  w = shape[1]
  row = tf.clip_by_value(tf.cast(yin - 0.5, tf.int32), 0, shape[0] - 1) * w
  flat = tf.reshape(image, [-1, shape[2]])
  x0, dx = _floor_frac(xin)
  taps = [tf.cast(tf.gather(flat, row + tf.clip_by_value(x0 + i, 0, w - 1)), tf.float64)
          for i in _TAPS[interpolation]]
  return _finish(_interpolate(taps, dx, interpolation), xin, yin, fill, interpolation)


def _warp_rows(image, cols, rows, offsets, fill, interpolation):
  """d = 0, e = 1, f whole (shear along x, translations with a whole vertical part)."""
  return _along_rows(image, *_coordinates(cols, rows, offsets), fill, interpolation)


def _warp_cols(image, cols, rows, offsets, fill, interpolation):
  """a = 1, b = 0, c whole: `_along_rows` on the transposed image (PIL's dx is 0, and its
  horizontal pass returns the column's own pixel)."""
  xin, yin = _coordinates(cols, rows, offsets)
  out = _along_rows(tf.transpose(image, [1, 0, 2]), tf.transpose(yin), tf.transpose(xin), fill,
                    interpolation)
  return tf.transpose(out, [1, 0, 2])


_WARPS = {
  'nearest': _jit(functools.partial(_warp, interpolation='nearest')),
  **{name: tuple(_jit(functools.partial(fn, interpolation=name))
                 for fn in (_warp, _warp_rows, _warp_cols)) for name in _TAPS},
}


def _round15(v):
  return tf.round(v * 1e15) / 1e15


def _size(image):
  shape = tf.shape(image)
  return tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)


# Matrices of the geometric ops, as functions of (argument, height, width): PIL's conventions.
def _rotate_matrix(degrees, h, w):
  cx, cy = w / 2., h / 2.
  angle = -_one(degrees) * (math.pi / 180.)
  a, b = _round15(tf.cos(angle)), _round15(tf.sin(angle))
  d, e = _round15(-tf.sin(angle)), _round15(tf.cos(angle))
  return tf.stack([a, b, a * -cx + b * -cy + cx, d, e, d * -cx + e * -cy + cy])


def _matrix(a=1., b=0., c=0., d=0., e=1., f=0.):
  return tf.stack([_one(v) for v in (a, b, c, d, e, f)])


_MATRICES = {
  'rotate': _rotate_matrix,
  'shear_x': lambda v, h, w: _matrix(b=v),
  'shear_y': lambda v, h, w: _matrix(d=v),
  'translate_x': lambda v, h, w: _matrix(c=v),
  'translate_y': lambda v, h, w: _matrix(f=v),
  'translate_x_rel': lambda v, h, w: _matrix(c=_one(v) * w),
  'translate_y_rel': lambda v, h, w: _matrix(f=_one(v) * h),
}


def _geometric(kind: str, doc: str):
  def op(image, arg, fill=(128, 128, 128), interpolation: str = 'bilinear') -> Image:
    image = _check_image(image)
    return affine(image, _MATRICES[kind](arg, *_size(image)), fill, interpolation)
  op.__name__ = op.__qualname__ = kind
  op.__doc__ = doc
  return op


rotate = _geometric('rotate', 'PIL `img.rotate(degrees, resample, fillcolor=fill)`: counter-clockwise '
                              'about the centre.')
shear_x = _geometric('shear_x', 'PIL affine (1, factor, 0, 0, 1, 0).')
shear_y = _geometric('shear_y', 'PIL affine (1, 0, 0, factor, 1, 0).')
translate_x = _geometric('translate_x', 'PIL affine (1, 0, pixels, 0, 1, 0): positive moves the content left.')
translate_y = _geometric('translate_y', 'PIL affine (1, 0, 0, 0, 1, pixels): positive moves the content up.')
translate_x_rel = _geometric('translate_x_rel', '`translate_x` by a fraction `pct` of the width.')
translate_y_rel = _geometric('translate_y_rel', '`translate_y` by a fraction `pct` of the height.')


# ---------------------------------------------------------------------------------------------
# Pixel ops: PIL.ImageOps (integer LUTs) and PIL.ImageEnhance (float32 blends)
# ---------------------------------------------------------------------------------------------

def invert(image) -> Image:
  """`ImageOps.invert`: 255 - x."""
  return 255 - _check_image(image)


def posterize(image, bits) -> Image:
  """`ImageOps.posterize`: keep the `bits` most significant bits. 0 bits gives black (Pillow >= 12
  rejects 0, older Pillow and timm's policies produce black); 8 or more is the identity."""
  return _posterize(_check_image(image), _one(bits))


@_jit
def _posterize(image, bits):
  shift = tf.clip_by_value(8 - tf.cast(bits, tf.int32), 0, 8)
  mask = tf.cast(tf.bitwise.bitwise_and(tf.bitwise.left_shift(255, shift), 255), tf.uint8)
  return tf.bitwise.bitwise_and(image, mask)


def solarize(image, threshold=128) -> Image:
  """`ImageOps.solarize`: x if x < threshold else 255 - x."""
  return _solarize(_check_image(image), _one(threshold))


@_jit
def _solarize(image, threshold):
  return tf.where(tf.cast(image, tf.int32) < tf.cast(threshold, tf.int32), image, 255 - image)


def solarize_add(image, add, threshold=128) -> Image:
  """timm's `solarize_add`: min(255, x + add) if x < threshold else x."""
  return _solarize_add(_check_image(image), _one(add), _one(threshold))


@_jit
def _solarize_add(image, add, threshold):
  x = tf.cast(image, tf.int32)
  added = tf.minimum(x + tf.cast(add, tf.int32), 255)
  return tf.cast(tf.where(x < tf.cast(threshold, tf.int32), added, x), tf.uint8)


def auto_contrast(image) -> Image:
  """`ImageOps.autocontrast(img)` (cutoff 0): per channel, map [min, max] to [0, 255] with PIL's
  float64 LUT arithmetic `int(x * scale + offset)`; a flat channel is left alone."""
  image = _check_image(image)
  lo = tf.cast(tf.reduce_min(image, axis=[0, 1]), tf.float64)[:, None]             # (C, 1)
  hi = tf.cast(tf.reduce_max(image, axis=[0, 1]), tf.float64)[:, None]
  # The 256-entry LUT in plain TF ops: XLA could contract x * scale + offset into one FMA and
  # move values that sit on an integer (the top one, typically) by one level.
  scale = 255. / tf.maximum(hi - lo, 1.)
  offset = -lo * scale
  levels = tf.range(256, dtype=tf.float64)[None, :]
  lut = tf.cast(tf.clip_by_value(tf.floor(levels * scale + offset), 0., 255.), tf.uint8)
  lut = tf.where(hi > lo, lut, tf.cast(levels, tf.uint8))                        # (C, 256)
  return _apply_lut(image, lut)


def _lut_index(image):
  """Index of each value in a (C, 256) table flattened: value + 256 * channel, int32, HWC."""
  return tf.cast(image, tf.int32) + 256 * tf.range(tf.shape(image)[2])


def _lookup(lut, index):
  """lut (C, 256) at `_lut_index` positions, as uint8."""
  return tf.cast(tf.gather(tf.reshape(lut, [-1]), index), tf.uint8)


@_jit
def _apply_lut(image, lut):
  """out[..., c] = lut[c, image[..., c]]."""
  return _lookup(lut, _lut_index(image))


def equalize(image) -> Image:
  """`ImageOps.equalize`: per channel, PIL's integer LUT: step = (N - h[last]) // 255,
  lut[i] = (step // 2 + sum(h[:i])) // step; identity when step is 0 or one value is used."""
  image = _check_image(image)
  # Two compiled calls: in one, XLA fuses the LUT arithmetic (integer divisions) into the
  # per-pixel lookup and recomputes it for every pixel, which costs more than the histogram.
  return _apply_lut(image, _equalize_lut(image))


@_jit
def _equalize_lut(image):
  c = image.shape[2]
  index = tf.reshape(_lut_index(image), [-1])
  # a segment sum (an XLA scatter, ~4x faster than TF's bincount kernels here), not
  # tf.math.bincount inside XLA: bincount's output size depends on max(input), which would make
  # XLA treat the image as a compile-time constant (a recompile per image)
  hist = tf.math.unsorted_segment_sum(tf.ones_like(index), index, 256 * c)
  hist = tf.reshape(hist, [c, 256])                                         # int32 counts
  total = tf.reduce_sum(hist, axis=1)
  used = hist > 0
  top = 255 - tf.argmax(tf.cast(tf.reverse(used, [1]), tf.int32), axis=1, output_type=tf.int32)
  last = tf.gather(hist, top, batch_dims=1)                                 # count of the top value
  step = (total - last) // 255
  before = tf.cumsum(hist, axis=1, exclusive=True)
  safe = tf.maximum(step, 1)[:, None]
  lut = tf.minimum((step[:, None] // 2 + before) // safe, 255)              # Pillow clips LUT values
  identity = tf.broadcast_to(tf.range(256)[None], [c, 256])
  return tf.where(((step > 0) & (tf.reduce_sum(tf.cast(used, tf.int32), axis=1) > 1))[:, None],
                  lut, identity)                                            # integers only


def blend(degenerate, image, factor) -> Image:
  """PIL `Image.blend(degenerate, image, factor)` on uint8: float32 `a + factor * (b - a)`,
  clipped to 0..255 and truncated. factor > 1 extrapolates (what the enhance ops use)."""
  a = tf.cast(degenerate, tf.float32)
  b = tf.cast(image, tf.float32)
  out = a + tf.cast(factor, tf.float32) * (b - a)
  return tf.cast(tf.floor(tf.clip_by_value(out, 0., 255.)), tf.uint8)


def to_grayscale(image) -> tf.Tensor:
  """PIL `convert('L')` (ITU-R 601-2 in 16-bit fixed point), shape (H, W, 1), int32."""
  x = tf.cast(image, tf.int32)
  luma = x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 0x8000
  return tf.bitwise.right_shift(luma, 16)[..., None]


def _enhance_op(degenerate_fn, doc):
  core = _jit(lambda image, factor: blend(degenerate_fn(image), image, factor))

  def op(image, factor) -> Image:
    image = _check_image(image)
    if image.shape[2] != 3:
      raise ValueError(f'{op.__name__} needs an RGB image (3 channels), got shape {image.shape}')
    return core(image, _one(factor))
  op.__doc__ = doc
  return op


def _gray_image(image):
  return tf.broadcast_to(to_grayscale(image), tf.shape(image))


def _mean_gray(image):
  gray = tf.cast(to_grayscale(image), tf.float64)
  mean = tf.floor(tf.reduce_sum(gray) / tf.cast(tf.size(gray), tf.float64) + 0.5)
  return tf.fill(tf.shape(image), mean)


def _smooth(image):
  """`ImageFilter.SMOOTH`: 3x3 [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 rounded, border unchanged.
  Integer sums are exact in float32 and S / 13 is never within 1/26 of a .5 tie."""
  x = tf.cast(image, tf.float32)
  h, w = tf.shape(x)[0], tf.shape(x)[1]
  total = 4. * x[1:-1, 1:-1]
  for dy, dx in itertools.product(range(3), range(3)):
    total += x[dy:h - 2 + dy, dx:w - 2 + dx]
  inner = tf.floor(total / 13. + 0.5)
  return tf.concat([x[:1], tf.concat([x[1:-1, :1], inner, x[1:-1, -1:]], axis=1), x[-1:]], axis=0)


color = _enhance_op(_gray_image, '`ImageEnhance.Color(img).enhance(factor)`: blend with the grey image.')
contrast = _enhance_op(_mean_gray, '`ImageEnhance.Contrast(img).enhance(factor)`: blend with the mean '
                                   'grey level int(mean(L) + 0.5).')
brightness = _enhance_op(tf.zeros_like, '`ImageEnhance.Brightness(img).enhance(factor)`: blend with black.')
sharpness = _enhance_op(_smooth, '`ImageEnhance.Sharpness(img).enhance(factor)`: blend with '
                                 '`ImageFilter.SMOOTH`.')
for _name, _op in (('color', color), ('contrast', contrast), ('brightness', brightness),
                   ('sharpness', sharpness)):
  _op.__name__ = _op.__qualname__ = _name


def _rgb_to_hsv(x):
  """PIL's ``convert('HSV')`` (``rgb2hsv_row``) with its C types: float32 variables, double
  arithmetic where a double literal enters, H and S truncated to uint8 levels; grey pixels get
  H = S = 0."""
  x = tf.cast(x, tf.float32)
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  maxc = tf.maximum(r, tf.maximum(g, b))
  minc = tf.minimum(r, tf.minimum(g, b))
  grey = maxc == minc
  cr = tf.where(grey, 1., maxc - minc)
  s = cr / tf.where(grey, 1., maxc)
  f64 = lambda v: tf.cast(v, tf.float64)  # noqa: E731
  f32 = lambda v: tf.cast(v, tf.float32)  # noqa: E731
  rc, gc, bc = f64((maxc - r) / cr), f64((maxc - g) / cr), f64((maxc - b) / cr)
  h = tf.where(r == maxc, bc - gc, tf.where(g == maxc, 2. + rc - bc, 4. + gc - rc))
  h = f32(tf.math.floormod(f64(f32(h)) / 6. + 1., 1.))
  level = lambda v: tf.clip_by_value(tf.cast(f64(v) * 255., tf.int32), 0, 255)  # noqa: E731
  uh = tf.where(grey, 0, level(h))
  us = tf.where(grey, 0, level(s))
  return uh, us, tf.cast(maxc, tf.int32)


def _hsv_to_rgb(h, s, v):
  """PIL's ``convert('RGB')`` from HSV (``hsv2rgb``): sector ``floor(6 h / 255)``, float32
  remainder and saturation, float64 products rounded half away from zero."""
  h64 = tf.cast(h, tf.float64) * 6. / 255.
  i = tf.floor(h64)
  f = tf.cast(tf.cast(h64 - i, tf.float32), tf.float64)
  fs = tf.cast(tf.cast(tf.cast(s, tf.float64) / 255., tf.float32), tf.float64)
  v64 = tf.cast(v, tf.float64)
  level = lambda u: tf.clip_by_value(tf.cast(tf.floor(u + 0.5), tf.int32), 0, 255)  # noqa: E731
  p, q, t = level(v64 * (1. - fs)), level(v64 * (1. - fs * f)), level(v64 * (1. - fs * (1. - f)))
  sector = tf.cast(i, tf.int32) % 6
  table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
  rgb = [tf.reduce_sum(tf.stack([row[c] for row in table], -1) *
                       tf.one_hot(sector, 6, dtype=tf.int32), -1) for c in range(3)]
  out = tf.stack(rgb, -1)
  return tf.where((s == 0)[..., None], tf.stack([v, v, v], -1), out)


@_jit
def _hue_core(image, shift):
  h, s, v = _rgb_to_hsv(image)
  h = (h + shift) % 256
  return tf.cast(_hsv_to_rgb(h, s, v), tf.uint8)


def hue(image, factor) -> Image:
  """torchvision's ``adjust_hue`` on a PIL image (what timm's colour jitter runs): RGB -> PIL
  HSV, ``H += int(factor * 255)`` modulo 256, back to RGB. ``factor`` in [-0.5, 0.5]."""
  image = _check_image(image)
  if image.shape[2] != 3:
    raise ValueError(f'hue needs an RGB image (3 channels), got shape {image.shape}')
  shift = tf.cast(tf.cast(_one(factor) * 255., tf.int32), tf.int32) % 256
  return _hue_core(image, shift)


JITTER_ORDER = ('brightness', 'contrast', 'saturation', 'hue')


def color_jitter_ranges(brightness=0., contrast=0., saturation=0., hue=0.):
  """timm's ``--color-jitter`` arguments as torchvision's ``ColorJitter`` ranges: a number ``x``
  means ``[max(0, 1 - x), 1 + x]`` for brightness/contrast/saturation and ``[-x, x]`` for hue
  (``x <= 0.5``); a pair is the range itself; a zero range is off (``None``)."""
  out = []
  for name, x in zip(JITTER_ORDER, (brightness, contrast, saturation, hue)):
    centre, bound = (0., (-0.5, 0.5)) if name == 'hue' else (1., (0., float('inf')))
    if isinstance(x, (int, float)):
      if x < 0:
        raise ValueError(f'color jitter {name}={x} must be non-negative.')
      lo, hi = centre - x, centre + x
      lo = max(lo, 0.) if name != 'hue' else lo
    else:
      lo, hi = (float(v) for v in x)
    if not bound[0] <= lo <= hi <= bound[1]:
      raise ValueError(f'color jitter {name} range ({lo}, {hi}) must lie within {bound}.')
    out.append(None if lo == hi == centre else (lo, hi))
  return tuple(out)


def color_jitter_params(seed, ranges):
  """torchvision's ``ColorJitter.get_params``: a random order of the four adjustments and a
  factor drawn uniformly from each range (1 or 0 where a range is off)."""
  seed = _check_seed(seed)
  s_order, *s_factors = _split(seed, 5)
  order = tf.argsort(_uniform(s_order, [4]))
  factors = [(_uniform(sf, [], lo, hi, tf.float64) if r is not None else
              tf.constant(0. if k == 3 else 1., tf.float64))
             for k, (sf, r) in enumerate(zip(s_factors, ranges)) for lo, hi in [r or (0., 0.)]]
  return order, tf.stack(factors)


def apply_color_jitter(image, order, factors, ranges=((0., 0.),) * 4) -> Image:
  """The four adjustments in ``order`` (indices into brightness, contrast, saturation, hue) with
  ``factors``; adjustments whose range is ``None`` are skipped, as torchvision does."""
  image = _check_image(image)
  fns = [functools.partial(lambda img, j, fn: fn(img, factors[j]), fn=fn) if r is not None
         else (lambda img, j: img) for fn, r in zip((brightness, contrast, color, hue), ranges)]
  for k in range(4):
    image = tf.switch_case(order[k], [functools.partial(fn, image, j) for j, fn in enumerate(fns)])
  return image


def color_jitter(image, seed, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.) -> Image:
  """timm's colour jitter (torchvision ``ColorJitter`` on a PIL image), e.g. ``--color-jitter 0.4``
  = ``color_jitter(img, seed, 0.4, 0.4, 0.4)``; Huawei Vega's ImageNet default adds ``hue=0.2``."""
  ranges = color_jitter_ranges(brightness, contrast, saturation, hue)
  order, factors = color_jitter_params(seed, ranges)
  return apply_color_jitter(image, order, factors, ranges)


def fill_rectangle(image, top, left, height, width, fill) -> Image:
  """Rows [top, top + height) x cols [left, left + width) set to `fill` (clipped to the image);
  `PIL.ImageDraw.rectangle([left, top, left + width - 1, top + height - 1], fill)`."""
  image = _check_image(image)
  shape = tf.shape(image)
  rows = tf.range(shape[0])[:, None, None]
  cols = tf.range(shape[1])[None, :, None]
  top, left = tf.cast(top, tf.int32), tf.cast(left, tf.int32)
  inside = (rows >= top) & (rows < top + tf.cast(height, tf.int32)) & \
           (cols >= left) & (cols < left + tf.cast(width, tf.int32))
  fill = tf.cast(tf.round(_fill_vector(fill, shape[2])), tf.uint8)[None, None, :]
  return tf.where(inside, fill, image)


def cutout(image, seed, pad_size, fill=(128, 128, 128)) -> Image:
  """Cutout (DeVries & Taylor; TF EfficientNet's AutoAugment op): a square of side 2 * pad_size
  centred at a uniformly drawn pixel, clipped to the image, set to `fill`."""
  image = _check_image(image)
  s_y, s_x = _split(_check_seed(seed), 2)
  shape = tf.shape(image)
  cy = tf.random.stateless_uniform([], s_y, 0, shape[0], dtype=tf.int32)
  cx = tf.random.stateless_uniform([], s_x, 0, shape[1], dtype=tf.int32)
  pad = tf.cast(pad_size, tf.int32)
  top, left = tf.maximum(cy - pad, 0), tf.maximum(cx - pad, 0)
  return fill_rectangle(image, top, left, cy + pad - top, cx + pad - left, fill)


# ---------------------------------------------------------------------------------------------
# Named ops and their magnitude -> argument maps (timm's LEVEL_TO_ARG)
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Hparams:
  """What timm passes to every op: fill colour, translation scales, resampling, magnitude noise."""
  fill: tuple[int, ...] = (128, 128, 128)
  translate_const: float = 250.      # pixels at level 1 for TranslateX/Y (timm default 250)
  translate_pct: float = 0.45        # image fraction at level 1 for TranslateX/YRel
  interpolation: str = 'random'      # 'random' = bilinear or bicubic, drawn per op application
  magnitude_std: float = 0.          # > 0: magnitude ~ N(M, std); inf: magnitude ~ U(0, M)
  magnitude_max: float | None = None  # upper clip of the magnitude (default LEVEL_DENOM = 10)

  def __post_init__(self):
    if self.interpolation not in INTERPOLATIONS + ('random',):
      raise ValueError(f'interpolation must be one of {INTERPOLATIONS + ("random",)}, '
                       f'got {self.interpolation!r}')


def _enhance(level, sign, hp):
  return level / LEVEL_DENOM * 1.8 + 0.1


def _enhance_inc(level, sign, hp):
  return tf.maximum(_one(0.1), 1.0 + sign * (level / LEVEL_DENOM * 0.9))


def _signed(scale):
  return lambda level, sign, hp: sign * (level / LEVEL_DENOM * scale(hp))


def _posterize_level(level):
  return tf.floor(level / LEVEL_DENOM * 4.)


def _solarize_level(level):
  return tf.minimum(_one(256.), tf.floor(level / LEVEL_DENOM * 256.))


_arg = lambda fn: (lambda image, arg: fn(image, arg))
_noarg = lambda fn: (lambda image, arg: fn(image))

# name -> (pixel op (image, arg) -> image, or the key of a geometric matrix in _MATRICES;
#          level -> argument map (level, sign, hparams) -> arg, None for ops without argument)
_OPS: dict[str, tuple[Callable | str, Callable | None]] = {
  'AutoContrast': (_noarg(auto_contrast), None),
  'Equalize': (_noarg(equalize), None),
  'Invert': (_noarg(invert), None),
  'Rotate': ('rotate', _signed(lambda hp: 30.)),
  'Posterize': (_arg(posterize), lambda lv, s, hp: _posterize_level(lv)),
  'PosterizeIncreasing': (_arg(posterize), lambda lv, s, hp: 4. - _posterize_level(lv)),
  'PosterizeOriginal': (_arg(posterize), lambda lv, s, hp: _posterize_level(lv) + 4.),
  'Solarize': (_arg(solarize), lambda lv, s, hp: _solarize_level(lv)),
  'SolarizeIncreasing': (_arg(solarize), lambda lv, s, hp: 256. - _solarize_level(lv)),
  'SolarizeAdd': (_arg(solarize_add),
                  lambda lv, s, hp: tf.minimum(_one(128.), tf.floor(lv / LEVEL_DENOM * 110.))),
  'Color': (_arg(color), _enhance),
  'ColorIncreasing': (_arg(color), _enhance_inc),
  'Contrast': (_arg(contrast), _enhance),
  'ContrastIncreasing': (_arg(contrast), _enhance_inc),
  'Brightness': (_arg(brightness), _enhance),
  'BrightnessIncreasing': (_arg(brightness), _enhance_inc),
  'Sharpness': (_arg(sharpness), _enhance),
  'SharpnessIncreasing': (_arg(sharpness), _enhance_inc),
  'ShearX': ('shear_x', _signed(lambda hp: 0.3)),
  'ShearY': ('shear_y', _signed(lambda hp: 0.3)),
  'TranslateX': ('translate_x', _signed(lambda hp: float(hp.translate_const))),
  'TranslateY': ('translate_y', _signed(lambda hp: float(hp.translate_const))),
  'TranslateXRel': ('translate_x_rel', _signed(lambda hp: float(hp.translate_pct))),
  'TranslateYRel': ('translate_y_rel', _signed(lambda hp: float(hp.translate_pct))),
}
OP_NAMES = tuple(_OPS)
GEOMETRIC_OPS = tuple(n for n, (op, _) in _OPS.items() if isinstance(op, str))


def _check_name(name: str):
  if name not in _OPS:
    raise ValueError(f'unknown op {name!r}; known: {", ".join(OP_NAMES)}')


def named_op(name: str) -> Callable[..., Image]:
  """The op behind a timm name as `(image, arg, fill, interpolation) -> image` (fill and
  interpolation are used by the geometric ops only)."""
  _check_name(name)
  op = _OPS[name][0]
  if isinstance(op, str):
    return lambda image, arg, fill=(128, 128, 128), interpolation='bilinear': affine(
      image, _MATRICES[op](arg, *_size(_check_image(image))), fill, interpolation)
  return lambda image, arg, fill=None, interpolation=None: op(_check_image(image), arg)


def level_to_arg(name: str, level, sign=1., hparams: Hparams = Hparams()) -> tf.Tensor:
  """The op argument for a (clipped) magnitude `level`, with the random sign given: timm's
  `LEVEL_TO_ARG[name](level, hparams)` with `_randomly_negate` fixed to `sign`. float64 scalar."""
  _check_name(name)
  fn = _OPS[name][1]
  return _one(0.) if fn is None else fn(_one(level), _one(sign), hparams)


def _select(index, fns: list[Callable]):
  return fns[0]() if len(fns) == 1 else tf.switch_case(index, fns)


def _layer(image, seed, names: Sequence[str], index, prob, magnitude, hp: Hparams) -> Image:
  """One timm `AugmentOp` call for the op `names[index]` (`index` may be a tensor): apply with
  probability `prob`, magnitude noise and clipping, random sign, random resampling filter.
  The geometric ops share one warp: the branch only picks the matrix."""
  s_prob, s_mag, s_sign, s_interp = _split(seed, 4)
  level = _one(magnitude)
  if hp.magnitude_std == float('inf'):
    level = _uniform(s_mag, dtype=tf.float64) * level
  elif hp.magnitude_std > 0:
    level = level + hp.magnitude_std * tf.random.stateless_normal([], s_mag, dtype=tf.float64)
  level = tf.clip_by_value(level, 0., float(hp.magnitude_max or LEVEL_DENOM))
  sign = tf.where(_uniform(s_sign) > 0.5, _one(-1.), _one(1.))
  arg = _select(index, [functools.partial(level_to_arg, n, level, sign, hp) for n in names])
  geometric = [n in GEOMETRIC_OPS for n in names]

  def warp():
    h, w = _size(image)
    matrix = _select(index, [functools.partial(_MATRICES[_OPS[n][0]], arg, h, w) if g else _matrix
                             for n, g in zip(names, geometric)])
    if hp.interpolation != 'random':
      return affine(image, matrix, hp.fill, hp.interpolation)
    return tf.cond(_uniform(s_interp) < 0.5, lambda: affine(image, matrix, hp.fill, 'bilinear'),
                   lambda: affine(image, matrix, hp.fill, 'bicubic'))

  def pixel():
    return _select(index, [(lambda: image) if g else functools.partial(_OPS[n][0], image, arg)
                           for n, g in zip(names, geometric)])

  if all(geometric):
    run = warp
  elif not any(geometric):
    run = pixel
  else:
    run = lambda: tf.cond(tf.gather(tf.constant(geometric), index), warp, pixel)
  if isinstance(prob, (int, float)) and prob >= 1.:
    out = run()
  else:
    out = tf.cond(_uniform(s_prob) < prob, run, lambda: image)
  out.set_shape(image.shape)
  return out


def apply_op(name: str, image, seed, magnitude: float, prob: float = 1.,
             hparams: Hparams = Hparams()) -> Image:
  """One timm `AugmentOp(name, prob, magnitude, hparams)` call: apply with probability `prob`,
  magnitude noise per `hparams.magnitude_std`, clip to [0, magnitude_max or 10], map to the op's
  argument (random sign where the op has one), resample bilinear/bicubic at random if asked."""
  _check_name(name)
  return _layer(_check_image(image), _check_seed(seed), (name,), 0, prob, magnitude, hparams)


# ---------------------------------------------------------------------------------------------
# RandAugment and AutoAugment
# ---------------------------------------------------------------------------------------------

RAND_TRANSFORMS = (
  'AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize', 'Solarize', 'SolarizeAdd', 'Color',
  'Contrast', 'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel')
RAND_INCREASING_TRANSFORMS = (
  'AutoContrast', 'Equalize', 'Invert', 'Rotate', 'PosterizeIncreasing', 'SolarizeIncreasing',
  'SolarizeAdd', 'ColorIncreasing', 'ContrastIncreasing', 'BrightnessIncreasing',
  'SharpnessIncreasing', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel')


def rand_augment(image, seed, num_layers: int = 2, magnitude: float = 10., prob: float = 0.5,
                 transforms: Sequence[str] = RAND_TRANSFORMS, hparams: Hparams = Hparams()) -> Image:
  """timm's RandAugment: `num_layers` times, pick an op uniformly (with replacement) and apply it
  with probability `prob` at `magnitude`."""
  image, seed = _check_image(image), _check_seed(seed)
  transforms = tuple(transforms)
  for name in transforms:
    _check_name(name)
  for seed_layer in (_split(seed, num_layers) if num_layers else []):
    s_choice, s_op = _split(seed_layer, 2)
    index = tf.random.stateless_uniform([], s_choice, 0, len(transforms), dtype=tf.int32)
    image = _layer(image, s_op, transforms, index, prob, magnitude, hparams)
  return image


_AA_ORIGINAL = (
  (('PosterizeOriginal', 0.4, 8), ('Rotate', 0.6, 9)),
  (('Solarize', 0.6, 5), ('AutoContrast', 0.6, 5)),
  (('Equalize', 0.8, 8), ('Equalize', 0.6, 3)),
  (('PosterizeOriginal', 0.6, 7), ('PosterizeOriginal', 0.6, 6)),
  (('Equalize', 0.4, 7), ('Solarize', 0.2, 4)),
  (('Equalize', 0.4, 4), ('Rotate', 0.8, 8)),
  (('Solarize', 0.6, 3), ('Equalize', 0.6, 7)),
  (('PosterizeOriginal', 0.8, 5), ('Equalize', 1.0, 2)),
  (('Rotate', 0.2, 3), ('Solarize', 0.6, 8)),
  (('Equalize', 0.6, 8), ('PosterizeOriginal', 0.4, 6)),
  (('Rotate', 0.8, 8), ('Color', 0.4, 0)),
  (('Rotate', 0.4, 9), ('Equalize', 0.6, 2)),
  (('Equalize', 0.0, 7), ('Equalize', 0.8, 8)),
  (('Invert', 0.6, 4), ('Equalize', 1.0, 8)),
  (('Color', 0.6, 4), ('Contrast', 1.0, 8)),
  (('Rotate', 0.8, 8), ('Color', 1.0, 2)),
  (('Color', 0.8, 8), ('Solarize', 0.8, 7)),
  (('Sharpness', 0.4, 7), ('Invert', 0.6, 8)),
  (('ShearX', 0.6, 5), ('Equalize', 1.0, 9)),
  (('Color', 0.4, 0), ('Equalize', 0.6, 3)),
  (('Equalize', 0.4, 7), ('Solarize', 0.2, 4)),
  (('Solarize', 0.6, 5), ('AutoContrast', 0.6, 5)),
  (('Invert', 0.6, 4), ('Equalize', 1.0, 8)),
  (('Color', 0.6, 4), ('Contrast', 1.0, 8)),
  (('Equalize', 0.8, 8), ('Equalize', 0.6, 3)),
)
_AA_V0 = (
  (('Equalize', 0.8, 1), ('ShearY', 0.8, 4)),
  (('Color', 0.4, 9), ('Equalize', 0.6, 3)),
  (('Color', 0.4, 1), ('Rotate', 0.6, 8)),
  (('Solarize', 0.8, 3), ('Equalize', 0.4, 7)),
  (('Solarize', 0.4, 2), ('Solarize', 0.6, 2)),
  (('Color', 0.2, 0), ('Equalize', 0.8, 8)),
  (('Equalize', 0.4, 8), ('SolarizeAdd', 0.8, 3)),
  (('ShearX', 0.2, 9), ('Rotate', 0.6, 8)),
  (('Color', 0.6, 1), ('Equalize', 1.0, 2)),
  (('Invert', 0.4, 9), ('Rotate', 0.6, 0)),
  (('Equalize', 1.0, 9), ('ShearY', 0.6, 3)),
  (('Color', 0.4, 7), ('Equalize', 0.6, 0)),
  (('Posterize', 0.4, 6), ('AutoContrast', 0.4, 7)),
  (('Solarize', 0.6, 8), ('Color', 0.6, 9)),
  (('Solarize', 0.2, 4), ('Rotate', 0.8, 9)),
  (('Rotate', 1.0, 7), ('TranslateYRel', 0.8, 9)),
  (('ShearX', 0.0, 0), ('Solarize', 0.8, 4)),
  (('ShearY', 0.8, 0), ('Color', 0.6, 4)),
  (('Color', 1.0, 0), ('Rotate', 0.6, 2)),
  (('Equalize', 0.8, 4), ('Equalize', 0.0, 8)),
  (('Equalize', 1.0, 4), ('AutoContrast', 0.6, 2)),
  (('ShearY', 0.4, 7), ('SolarizeAdd', 0.6, 7)),
  (('Posterize', 0.8, 2), ('Solarize', 0.6, 10)),
  (('Solarize', 0.6, 8), ('Equalize', 0.6, 1)),
  (('Color', 0.8, 6), ('Rotate', 0.4, 5)),
)


def _research_posterize(policy, old):
  return tuple(tuple(('PosterizeIncreasing' if n == old else n, p, m) for n, p, m in sub)
               for sub in policy)


_AA_POLICIES = {
  'original': _AA_ORIGINAL,  # AutoAugment paper's ImageNet policy (arXiv 1805.09501)
  'originalr': _research_posterize(_AA_ORIGINAL, 'PosterizeOriginal'),
  'v0': _AA_V0,              # TPU EfficientNet's ImageNet policy
  'v0r': _research_posterize(_AA_V0, 'Posterize'),
}


def auto_augment_policy(name: str) -> tuple[tuple[tuple[str, float, int], ...], ...]:
  """The sub-policies ((op, prob, magnitude), ...) of a named ImageNet policy, as timm names them."""
  if name not in _AA_POLICIES:
    raise ValueError(f'unknown AutoAugment policy {name!r}; known: {", ".join(_AA_POLICIES)}')
  return _AA_POLICIES[name]


def auto_augment(image, seed, policy: str = 'v0', hparams: Hparams = Hparams()) -> Image:
  """timm's AutoAugment: pick one sub-policy uniformly and apply its ops in order, each with its
  own probability and magnitude."""
  image, seed = _check_image(image), _check_seed(seed)
  subs = auto_augment_policy(policy)
  names = tuple(dict.fromkeys(n for sub in subs for n, _, _ in sub))
  depth = len(subs[0])          # every ImageNet policy has two ops per sub-policy
  table_index = tf.constant([[names.index(n) for n, _, _ in sub] for sub in subs], tf.int32)
  table_prob = tf.constant([[p for _, p, _ in sub] for sub in subs], tf.float32)
  table_mag = tf.constant([[m for _, _, m in sub] for sub in subs], tf.float64)
  s_choice, s_ops = _split(seed, 2)
  choice = tf.random.stateless_uniform([], s_choice, 0, len(subs), dtype=tf.int32)
  for k, s in enumerate(_split(s_ops, depth)):
    image = _layer(image, s, names, table_index[choice, k], table_prob[choice, k],
                   table_mag[choice, k], hparams)
  return image


# ---------------------------------------------------------------------------------------------
# Spec strings and the pipeline entry point
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AugmentSpec:
  """A parsed timm augmentation string. kind: 'rand', 'auto' or 'none'."""
  kind: str
  num_layers: int = 2
  magnitude: float = LEVEL_DENOM
  prob: float = 0.5
  magnitude_std: float = 0.
  magnitude_max: float | None = None
  increasing: bool = False
  policy: str = ''

  @property
  def transforms(self) -> tuple[str, ...]:
    return RAND_INCREASING_TRANSFORMS if self.increasing else RAND_TRANSFORMS


_RAND_KEYS = ('m', 'n', 'p', 'mstd', 'mmax', 'inc')


def parse_spec(spec: str | None) -> AugmentSpec:
  """Parse timm's `--aa` strings: 'rand-m9-mstd0.5', 'rand-m9-n3-mstd0.5-inc1', 'original',
  'v0-mstd0.5'; None / '' / 'none' means no augmentation."""
  if spec is None or spec.strip().lower() in ('', 'none'):
    return AugmentSpec('none')
  parts = spec.strip().split('-')
  head, sections = parts[0], parts[1:]
  values = {}
  for section in sections:
    if head == 'rand' and section.startswith('t'):   # timm's transform-set choice ('tweights')
      values[section] = ''
      continue
    key, *rest = re.split(r'(\d.*)', section)
    if not rest:
      raise ValueError(f'{spec!r}: section {section!r} has no number; write e.g. "m9" or "mstd0.5"')
    values[key] = rest[0]
  try:
    if head == 'rand':
      unknown = set(values) - set(_RAND_KEYS)
      if unknown:
        raise ValueError(f'{spec!r}: unknown RandAugment section(s) {sorted(unknown)}; known: '
                         f'{", ".join(_RAND_KEYS)} (transform sets "t..." and AugMix are not supported)')
      mstd = float(values.get('mstd', 0.))
      return AugmentSpec(
        'rand', num_layers=int(values.get('n', 2)), magnitude=int(values.get('m', LEVEL_DENOM)),
        prob=float(values.get('p', 0.5)), magnitude_std=float('inf') if mstd > 100 else mstd,
        magnitude_max=int(values['mmax']) if 'mmax' in values else None,
        increasing=bool(int(values.get('inc', 0))))
    if head in _AA_POLICIES:
      unknown = set(values) - {'mstd'}
      if unknown:
        raise ValueError(f'{spec!r}: AutoAugment accepts only "mstd", got {sorted(unknown)}')
      return AugmentSpec('auto', policy=head, magnitude_std=float(values.get('mstd', 0.)))
  except ValueError as err:
    if str(err).startswith(repr(spec)):
      raise
    raise ValueError(f'{spec!r}: bad number ({err}); e.g. "rand-m9-n2-mstd0.5"') from None
  raise ValueError(f'unknown augmentation {spec!r}: use "rand-..." (RandAugment) or one of the '
                   f'AutoAugment policies {", ".join(_AA_POLICIES)}')


def build_train_ops(spec: str | None, img_size: int | Sequence[int], *,
                    mean: Sequence[float], interpolation: str = 'random',
                    ) -> Callable[[Image, Seed], Image]:
  """`(image_uint8_hwc, seed[2]) -> image_uint8_hwc` for a timm `--aa` string, with the hparams
  timm's `create_transform` passes: fill = uint8 `mean` (the model's normalisation mean,
  `get_spec(name).mean`), translate_const = int(0.45 * min size),
  resampling `interpolation` ('random' = bilinear or bicubic per op, timm's default)."""
  parsed = parse_spec(spec)
  size = min(img_size) if isinstance(img_size, Sequence) else img_size
  hp = Hparams(fill=tuple(min(255, round(255 * v)) for v in mean),
               translate_const=float(int(size * 0.45)), interpolation=interpolation,
               magnitude_std=parsed.magnitude_std, magnitude_max=parsed.magnitude_max)
  if parsed.kind == 'none':
    fn = lambda image, seed: _check_image(image)
  elif parsed.kind == 'rand':
    fn = functools.partial(_call_rand, parsed=parsed, hp=hp)
  else:
    fn = functools.partial(_call_auto, policy=parsed.policy, hp=hp)
  return tf.autograph.experimental.do_not_convert(fn)


def _call_rand(image, seed, parsed, hp):
  return rand_augment(image, seed, parsed.num_layers, parsed.magnitude, parsed.prob,
                      parsed.transforms, hp)


def _call_auto(image, seed, policy, hp):
  return auto_augment(image, seed, policy, hp)


# ---------------------------------------------------------------------------------------------
# Random erasing (after normalisation)
# ---------------------------------------------------------------------------------------------

_ERASE_MODES = ('const', 'rand', 'pixel')


def random_erasing(image, seed, probability: float = 0.5, min_area: float = 0.02,
                   max_area: float = 1 / 3, min_aspect: float = 0.3, max_aspect: float | None = None,
                   mode: str = 'const', min_count: int = 1, max_count: int | None = None,
                   attempts: int = 10) -> tf.Tensor:
  """timm's RandomErasing on one normalised float HWC image.

  With probability `probability`, erase `count` ~ U{min_count..max_count} boxes; each box tries
  `attempts` (area, aspect) draws, area ~ U(min_area, max_area) * H * W / count, log-aspect
  uniform in [log min_aspect, log max_aspect], side lengths rounded, keeps the first that fits
  strictly inside, and is placed uniformly. Fill: 'const' zeros, 'rand' one N(0, 1) colour per
  box, 'pixel' N(0, 1) per pixel and channel.
  """
  image, seed = tf.convert_to_tensor(image), _check_seed(seed)
  if not image.dtype.is_floating or image.shape.rank != 3:
    raise ValueError(f'random_erasing expects one normalised float HWC image, got {image.dtype.name} '
                     f'{image.shape}; apply it after normalisation, before batching.')
  if mode not in _ERASE_MODES:
    raise ValueError(f'mode must be one of {_ERASE_MODES}, got {mode!r}')
  max_count = max_count or min_count
  if not 0. <= probability <= 1. or not 0. < min_area <= max_area <= 1. or not 1 <= min_count <= max_count:
    raise ValueError(f'need 0 <= probability <= 1, 0 < min_area <= max_area <= 1, '
                     f'1 <= min_count <= max_count; got {probability}, {min_area}, {max_area}, '
                     f'{min_count}, {max_count}')
  log_aspect = (math.log(min_aspect), math.log(max_aspect or 1 / min_aspect))
  return _erasing_core(float(probability), float(min_area), float(max_area), log_aspect, mode,
                       int(min_count), int(max_count), int(attempts))(image, seed)


@functools.lru_cache(maxsize=None)
def _erasing_core(probability, min_area, max_area, log_aspect, mode, min_count, max_count, attempts):
  """The draws (scalars, and the noise only when a box is erased) run as plain TF ops: stateless
  RNG inside XLA would make the seed a compile-time constant. The masking runs under XLA."""

  def erase(image, seed):
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    s_apply, s_count, s_boxes = _split(seed, 3)
    apply = _uniform(s_apply) < probability
    count = tf.random.stateless_uniform([], s_count, min_count, max_count + 1, dtype=tf.int32) \
      if max_count > min_count else tf.constant(min_count)
    boxes, fills = [], []
    for k, s_box in enumerate(_split(s_boxes, max_count)):
      s_area, s_aspect, s_top, s_left, s_fill = _split(s_box, 5)
      area = _uniform(s_area, [attempts], min_area, max_area) * hf * wf / tf.cast(count, tf.float32)
      aspect = tf.exp(_uniform(s_aspect, [attempts], *log_aspect))
      bh = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32)
      bw = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32)
      fits = (bw < w) & (bh < h)
      first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
      bh, bw = bh[first], bw[first]
      top = tf.cast(tf.floor(_uniform(s_top) * tf.cast(h - bh + 1, tf.float32)), tf.int32)
      left = tf.cast(tf.floor(_uniform(s_left) * tf.cast(w - bw + 1, tf.float32)), tf.int32)
      active = apply & tf.reduce_any(fits) & (k < count)
      boxes.append(tf.stack([top, top + bh, left, left + bw, tf.cast(active, tf.int32)]))
      fill_shape = shape if mode == 'pixel' else [1, 1, shape[2]]
      if mode == 'const':
        fills.append(tf.zeros(fill_shape, image.dtype))
      elif mode == 'rand':
        noise = functools.partial(tf.random.stateless_normal, fill_shape, s_fill, dtype=image.dtype)
        fills.append(tf.cond(active, noise, lambda: tf.zeros(fill_shape, image.dtype)))
      else:   # noise for the box only (normals are the expensive part), placed by padding
        noise = functools.partial(_box_noise, s_fill, top, left, bh, bw, shape, image.dtype)
        fills.append(tf.cond(active, noise, lambda: tf.zeros(fill_shape, image.dtype)))
    boxes = tf.stack(boxes)
    return tf.cond(tf.reduce_any(boxes[:, 4] > 0), lambda: _paste_boxes(image, boxes, tf.stack(fills)),
                   lambda: tf.identity(image))

  return erase


def _box_noise(seed, top, left, bh, bw, shape, dtype):
  noise = tf.random.stateless_normal(tf.stack([bh, bw, shape[2]]), seed, dtype=dtype)
  return tf.pad(noise, [[top, shape[0] - top - bh], [left, shape[1] - left - bw], [0, 0]])


@_jit
def _paste_boxes(image, boxes, fills):
  """Boxes (n, 5) = [y0, y1, x0, x1, active] in order; fills (n, H or 1, W or 1, C)."""
  shape = tf.shape(image)
  rows = tf.range(shape[0])[:, None, None]
  cols = tf.range(shape[1])[None, :, None]
  out = image
  for k in range(boxes.shape[0]):
    y0, y1, x0, x1, active = tf.unstack(boxes[k])
    inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1) & (active > 0)
    out = tf.where(inside, fills[k], out)
  return out


def build_random_erasing(probability: float = 0.25, mode: str = 'pixel', min_count: int = 1,
                         max_count: int | None = None, **kwargs) -> Callable[[tf.Tensor, Seed], tf.Tensor]:
  """`(image_float_hwc, seed[2]) -> image` with timm's `--reprob/--remode/--recount` meaning
  (`max_count` = recount); identity when probability is 0."""
  if probability <= 0.:
    return lambda image, seed: tf.convert_to_tensor(image)
  random_erasing(tf.zeros([8, 8, 3]), tf.constant([0, 0]), probability, mode=mode,
                 min_count=min_count, max_count=max_count, **kwargs)   # validate arguments now
  return tf.autograph.experimental.do_not_convert(functools.partial(
    random_erasing, probability=probability, mode=mode, min_count=min_count, max_count=max_count,
    **kwargs))


def _no_autograph():
  """Everything here is explicit TF control flow: keep AutoGraph from re-parsing the source
  when the ops run under tf.function / Dataset.map (it would cost seconds of tracing)."""
  for name in __all__:
    fn = globals()[name]
    if callable(fn) and not isinstance(fn, type):
      globals()[name] = tf.autograph.experimental.do_not_convert(fn)


_no_autograph()
