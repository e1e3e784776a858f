"""Host augmentation (ghostnets_jax/data/augment.py) against timm's PIL implementation.

Reference: timm.data.auto_augment's op functions (PIL.ImageOps / ImageEnhance / Image.transform)
called with the same arguments, fill colour and resampling filter, on natural photographs
(scikit-image's bundled astronaut / coffee / chelsea, plus a low-contrast copy so autocontrast
and equalize have work to do).

Tolerances (mean absolute difference in uint8 levels, per op):
- integer LUT ops (invert, posterize, solarize, solarize_add, autocontrast, equalize): exact.
- float ops (colour/contrast/brightness/sharpness blends in float32, affine warps in float64 with
  truncation to uint8, as PIL's C code): MAD <= 0.01 and max 1. They are bit-exact on this machine;
  the slack covers a compiler contracting a*b+c into one FMA on other platforms, which can move a
  value across an integer and flip the truncation by one level on a few pixels.
- nearest-neighbour warps: MAD <= 0.05. PIL resamples AFFINE/NEAREST in 16.16 fixed point, we in
  float64, so a pixel centre lying on a source pixel edge can pick the neighbour (timm never uses
  nearest; it draws bilinear or bicubic).
"""
from __future__ import annotations

import functools
import itertools
import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

import timm.data.auto_augment as T
from timm.data import IMAGENET_DEFAULT_MEAN
from timm.data.random_erasing import RandomErasing
import tensorflow as tf

from ghostnets_jax.data import augment as A

pytestmark = pytest.mark.xdist_group('augment')

FILL = tuple(round(255 * v) for v in IMAGENET_DEFAULT_MEAN)   # timm's img_mean: (124, 116, 104)
EXACT, FLOAT_MAD, NEAREST_MAD = 0., 0.01, 0.05
RESAMPLE = {'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC, 'nearest': Image.NEAREST}
HPARAMS = dict(translate_const=100, img_mean=FILL)


@functools.lru_cache(maxsize=None)
def natural_images() -> tuple[np.ndarray, ...]:
  """Four 96x128 photographs (one shape: the XLA-compiled ops compile once per shape)."""
  import skimage.data
  imgs = [skimage.data.astronaut()[::4, ::4], skimage.data.coffee()[::4, ::3],
          skimage.data.chelsea()[::3, ::3]]
  imgs = [i[:96, :128] for i in imgs]
  imgs.append((imgs[1] // 3 + 70).astype(np.uint8))          # low contrast, no 0 or 255
  return tuple(np.ascontiguousarray(i) for i in imgs)


def mad(ours, ref) -> tuple[float, int]:
  d = np.abs(np.asarray(ours, np.int32) - np.asarray(ref, np.int32))
  return float(d.mean()), int(d.max())


def timm_arg(name, magnitude, sign):
  """timm's level -> argument with the random sign fixed."""
  fn = T.LEVEL_TO_ARG[name]
  if fn is None:
    return ()
  saved = T._randomly_negate
  T._randomly_negate = lambda v: sign * v
  try:
    return fn(magnitude, HPARAMS)
  finally:
    T._randomly_negate = saved


def pil_reference(name, img, args, interpolation):
  if name.startswith('Posterize') and args[0] == 0:
    # Pillow >= 12 rejects 0 bits; the op is defined by its LUT x & ~(2**8 - 1) = 0 (old Pillow).
    return np.zeros_like(img)
  out = T.NAME_TO_OP[name](Image.fromarray(img), *args, fillcolor=FILL,
                           resample=RESAMPLE[interpolation])
  return np.asarray(out)


GEOMETRIC = set(A.GEOMETRIC_OPS)
assert GEOMETRIC == {'Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'TranslateXRel',
                     'TranslateYRel'}
SIGNED = GEOMETRIC | {n for n in A.OP_NAMES if n.endswith('Increasing') and 'Posterize' not in n
                      and 'Solarize' not in n}
LUT_OPS = {'AutoContrast', 'Equalize', 'Invert', 'Posterize', 'PosterizeIncreasing',
           'PosterizeOriginal', 'Solarize', 'SolarizeIncreasing', 'SolarizeAdd'}


@functools.lru_cache(maxsize=None)
def traced_op(name: str, interpolation: str):
  """The op as one tf.function over any image size and argument (one trace per op/filter)."""
  op = A.named_op(name)
  return tf.function(lambda img, arg: op(img, arg, FILL, interpolation),
                     input_signature=[tf.TensorSpec([None, None, 3], tf.uint8),
                                      tf.TensorSpec([], tf.float64)])


@pytest.mark.parametrize('name', A.OP_NAMES)
def test_op_matches_timm_pil(name):
  """Every named op at magnitudes 0 (edge), 3, 5, 9 and 10 (edge), both signs, both resampling
  filters, on every test image: argument equal to timm's, image within the stated tolerance."""
  hp = A.Hparams(fill=FILL, translate_const=100.)
  signs = (1., -1.) if name in SIGNED else (1.,)
  interps = ('bilinear', 'bicubic') if name in GEOMETRIC else ('bilinear',)
  tol = EXACT if name in LUT_OPS else FLOAT_MAD
  for magnitude, sign in itertools.product((0, 3, 5, 9, 10), signs):
    ref_args = timm_arg(name, magnitude, sign)
    arg = float(A.level_to_arg(name, magnitude, sign, hp))
    if ref_args:
      assert arg == pytest.approx(float(ref_args[0]), abs=1e-12), (name, magnitude, sign)
    for img, interp in itertools.product(natural_images(), interps):
      ours = traced_op(name, interp)(img, arg).numpy()
      got_mad, got_max = mad(ours, pil_reference(name, img, ref_args, interp))
      assert got_mad <= tol and got_max <= (0 if tol == EXACT else 1), \
        f'{name} m={magnitude} sign={sign} {interp} {img.shape}: MAD {got_mad:.4f}, max {got_max}'


@pytest.mark.parametrize('interpolation', ['bilinear', 'bicubic', 'nearest'])
def test_warps_at_extreme_arguments(interpolation):
  """Beyond timm's ranges too: big rotations (incl. 90/180, PIL's transpose fast path),
  strong shears, translations past the border (all fill)."""
  tol = NEAREST_MAD if interpolation == 'nearest' else FLOAT_MAD
  img = natural_images()[0]
  pil, res = Image.fromarray(img), RESAMPLE[interpolation]
  cases = [(A.rotate, T.rotate, d) for d in (0., 45., 90., 180., -135.5)]
  cases += [(A.shear_x, T.shear_x, 1.0), (A.shear_y, T.shear_y, -0.75),
            (A.translate_x, T.translate_x_abs, 500.), (A.translate_y, T.translate_y_abs, -17.25)]
  for ours_fn, ref_fn, arg in cases:
    ours = ours_fn(img, arg, FILL, interpolation).numpy()
    ref = np.asarray(ref_fn(pil, arg, fillcolor=FILL, resample=res))
    got_mad, _ = mad(ours, ref)
    assert got_mad <= tol, f'{ours_fn.__name__}({arg}) {interpolation}: MAD {got_mad:.4f}'
  assert np.all(A.translate_x(img, 500., FILL).numpy() == np.array(FILL, np.uint8))


# (a, b, c, d, e, f) -> which warp `affine` runs: 1 = rows (d = 0, e = 1, f whole), 2 = columns
# (a = 1, b = 0, c whole), 0 = general. Fractional, whole and out-of-image offsets.
AXIS_CASES = [
  ((1., 0.27, 0., 0., 1., 0.), 1), ((1., -0.3, 5., 0., 1., -3.), 1), ((1., 0., 12.4, 0., 1., 0.), 1),
  ((1., 0., -7.75, 0., 1., 2.), 1), ((1., 0., 0.5, 0., 1., 0.), 1), ((0.9, 0.1, 2.5, 0., 1., 1.), 1),
  ((1., 0., 3., 0., 1., 0.), 1), ((1., 0., 0., 0., 1., 0.), 1), ((1., 0., 500., 0., 1., 0.), 1),
  ((1., 0., 0., 0.27, 1., 0.), 2), ((1., 0., 0., -0.3, 1., 4.6), 2), ((1., 0., -2., 0.1, 1.1, 3.3), 2),
  ((1., 0., 0., 0., 1., 9.6), 2), ((1., 0., 4., 0., 1., -30.2), 2), ((1., 0., 0., 0., 1., -0.5), 2),
  ((1., 0.2, 0.3, 0., 1., 0.5), 0), ((1., 0., 0.5, 0.1, 1., 0.5), 0), ((1., 0., 1.5, 0., 1., 2.5), 0),
]


@pytest.mark.parametrize('interpolation', ['bilinear', 'bicubic'])
def test_axis_aligned_warps_match_pil_on_random_images(interpolation, monkeypatch):
  """`affine`'s one-axis paths (shears and translations that keep rows or columns on whole
  pixels) and the general warp beside them, against PIL's `Image.transform(AFFINE)` on random
  images (every level, hard edges), two sizes, two fill colours; each matrix runs the path
  stated in AXIS_CASES."""
  ran = []
  warps = {name: tuple(functools.partial(lambda *a, k, fn: ran.append(k) or fn(*a), k=k, fn=fn)
                       for k, fn in enumerate(fns)) if isinstance(fns, tuple) else fns
           for name, fns in A._WARPS.items()}
  monkeypatch.setattr(A, '_WARPS', warps)
  rng = np.random.RandomState(1)
  for shape, fill in (((37, 53, 3), FILL), ((64, 48, 3), (0, 255, 7))):
    img = rng.randint(0, 256, size=shape).astype(np.uint8)
    for matrix, path in AXIS_CASES:
      ran.clear()
      ours = A.affine(img, matrix, fill, interpolation).numpy()
      ref = np.asarray(Image.fromarray(img).transform(
        (shape[1], shape[0]), Image.AFFINE, matrix, RESAMPLE[interpolation], fillcolor=fill))
      got_mad, got_max = mad(ours, ref)
      assert ran == [path], (matrix, ran)
      assert got_mad <= FLOAT_MAD and got_max <= 1, \
        f'{matrix} {interpolation} {shape}: MAD {got_mad:.4f}, max {got_max}'


def test_histogram_ops_on_small_random_images():
  """equalize / autocontrast on tiny images, where PIL's LUT arithmetic hits its corner cases
  (LUT entries above 255, flat channels, two-value channels)."""
  rng = np.random.RandomState(0)
  for trial in range(30):
    h, w = [(3, 5), (7, 11), (10, 4)][trial % 3]
    hi = rng.choice([2, 5, 40, 256])
    img = rng.randint(0, hi, size=(h, w, 3)).astype(np.uint8)
    img[..., 2] = img[0, 0, 2] if trial % 5 == 0 else img[..., 2]       # a flat channel
    for ours_fn, ref_fn in ((A.equalize, T.equalize), (A.auto_contrast, T.auto_contrast)):
      ref = np.asarray(ref_fn(Image.fromarray(img)))
      np.testing.assert_array_equal(ours_fn(img).numpy(), ref, err_msg=f'{ours_fn.__name__} {trial}')


def test_posterize_bits_edges():
  img = natural_images()[1]
  for bits in range(0, 10):
    lut = [i & (~(2 ** max(8 - bits, 0) - 1) & 255) for i in range(256)]
    ref = np.asarray(Image.fromarray(img).point(lut * 3))
    np.testing.assert_array_equal(A.posterize(img, bits).numpy(), ref, err_msg=f'bits={bits}')


def test_fill_rectangle_and_cutout():
  img = natural_images()[2]
  for top, left, hh, ww in [(0, 0, 5, 7), (10, 20, 30, 1), (90, 140, 50, 50)]:
    ref = Image.fromarray(img.copy())
    ImageDraw.Draw(ref).rectangle([left, top, left + ww - 1, top + hh - 1], fill=FILL)
    np.testing.assert_array_equal(A.fill_rectangle(img, top, left, hh, ww, FILL).numpy(), np.asarray(ref))
  seed = tf.constant([3, 4], tf.int64)
  out = A.cutout(img, seed, 16, FILL).numpy()
  changed = np.any(out != img, axis=-1)
  ys, xs = np.nonzero(np.all(out == np.array(FILL, np.uint8), axis=-1) & changed)
  assert 0 < changed.sum() <= 32 * 32 and ys.max() - ys.min() < 32 and xs.max() - xs.min() < 32
  np.testing.assert_array_equal(out, A.cutout(img, seed, 16, FILL).numpy())


def test_inputs_are_checked():
  with pytest.raises(TypeError, match='uint8'):
    A.rotate(np.zeros((8, 8, 3), np.float32), 10.)
  with pytest.raises(ValueError, match='rank 3'):
    A.equalize(np.zeros((2, 8, 8, 3), np.uint8))
  with pytest.raises(ValueError, match='interpolation'):
    A.rotate(np.zeros((8, 8, 3), np.uint8), 10., interpolation='lanczos')
  with pytest.raises(ValueError, match='shape \\[2\\]'):
    A.rand_augment(np.zeros((8, 8, 3), np.uint8), tf.constant(3))
  with pytest.raises(ValueError, match='unknown op'):
    A.apply_op('Blur', np.zeros((8, 8, 3), np.uint8), tf.constant([0, 0]), 5.)
  with pytest.raises(ValueError, match='interpolation'):
    A.Hparams(interpolation='area')


def test_apply_op_probability_and_magnitude():
  """prob 0 never applies; magnitude 0 rotates by 0 degrees (identity); prob 1 at magnitude 10
  with inc ops applies the strongest setting."""
  img = natural_images()[1]
  seed = tf.constant([1, 2], tf.int64)
  np.testing.assert_array_equal(A.apply_op('Invert', img, seed, 5., prob=0.).numpy(), img)
  np.testing.assert_array_equal(A.apply_op('Rotate', img, seed, 0., prob=1.).numpy(), img)
  np.testing.assert_array_equal(A.apply_op('Invert', img, seed, 5., prob=1.).numpy(), 255 - img)
  black = A.apply_op('PosterizeIncreasing', img, seed, 10., prob=1.).numpy()
  assert black.max() == 0


# ---------------------------------------------------------------------------------------------
# Spec strings, policies, whole-pipeline behaviour
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('spec', ['rand-m9-mstd0.5', 'rand-m9-n2-mstd0.5-inc1', 'rand-m7-n3-p0.7',
                                  'rand-mstd101-mmax15', 'rand-m10-n1-mstd1-inc0', 'rand'])
def test_rand_spec_matches_timm(spec):
  ref = T.rand_augment_transform(spec, dict(HPARAMS))
  ours = A.parse_spec(spec)
  assert ours.kind == 'rand'
  assert ours.num_layers == ref.num_layers
  assert list(ours.transforms) == [op.name for op in ref.ops]
  assert {ours.prob} == {op.prob for op in ref.ops}
  assert {ours.magnitude} == {op.magnitude for op in ref.ops}
  assert {ours.magnitude_std} == {op.magnitude_std for op in ref.ops}
  assert {ours.magnitude_max} == {op.magnitude_max for op in ref.ops}


@pytest.mark.parametrize('spec', ['original', 'originalr', 'v0', 'v0r', 'v0-mstd0.5'])
def test_auto_augment_policy_matches_timm(spec):
  ref = T.auto_augment_transform(spec, dict(HPARAMS))
  ours = A.parse_spec(spec)
  assert ours.kind == 'auto'
  table = [[(op.name, op.prob, op.magnitude) for op in sub] for sub in ref.policy]
  assert [list(sub) for sub in A.auto_augment_policy(ours.policy)] == table
  assert {ours.magnitude_std} == {op.magnitude_std for sub in ref.policy for op in sub}


@pytest.mark.parametrize('spec, match', [
  ('rand-m9-x3', 'unknown RandAugment section'), ('rand-m9.5', 'bad number'),
  ('rand-mstd', 'has no number'), ('augmix-m5', 'unknown augmentation'),
  ('original-m3', 'only "mstd"'), ('rand-tweights', 'unknown RandAugment section')])
def test_bad_specs_raise(spec, match):
  with pytest.raises(ValueError, match=match):
    A.parse_spec(spec)


def test_no_augmentation_specs():
  img = natural_images()[0]
  for spec in (None, '', 'none'):
    np.testing.assert_array_equal(A.build_train_ops(spec, img.shape[:2], mean=IMAGENET_DEFAULT_MEAN)(img, tf.constant([0, 1])).numpy(), img)


@functools.lru_cache(maxsize=None)
def compiled(spec: str, img_size: int = 112):
  fn = A.build_train_ops(spec, img_size=img_size, mean=IMAGENET_DEFAULT_MEAN)
  return tf.function(fn, input_signature=[tf.TensorSpec([None, None, 3], tf.uint8),
                                          tf.TensorSpec([2], tf.int64)])


def candidates(img, subpolicies, hparams):
  """Every image timm can produce from `subpolicies` ([(name, prob, magnitude), ...] lists), over
  applied/skipped ops, signs and resampling filters."""
  out = set()
  for sub in subpolicies:
    frontier = {img.tobytes()}
    for name, prob, magnitude in sub:
      nxt = set(frontier) if prob < 1 else set()
      if prob > 0:
        for src, sign, interp in itertools.product(frontier, (1., -1.), ('bilinear', 'bicubic')):
          x = np.frombuffer(src, np.uint8).reshape(img.shape)
          args = T.LEVEL_TO_ARG[name]
          saved = T._randomly_negate
          T._randomly_negate = lambda v: sign * v
          try:
            level_args = args(magnitude, hparams) if args else ()
          finally:
            T._randomly_negate = saved
          nxt.add(pil_reference(name, x, level_args, interp).tobytes())
      frontier = nxt
    out |= frontier
  return out


def closest(out, allowed: set[bytes]) -> tuple[float, int]:
  """(MAD, max) to the nearest of the allowed images."""
  return min(mad(out, np.frombuffer(a, np.uint8).reshape(out.shape)) for a in allowed)


def test_rand_augment_output_is_a_timm_output():
  """One layer, p=1, fixed magnitude: for every seed the result is one of the images timm's
  RandAugment could return (any of its 15 ops, either sign, either filter), within the float-op
  tolerance; across seeds many different ops are drawn."""
  img = natural_images()[0]
  fn = compiled('rand-m9-n1-p1.0', 96)
  hparams = dict(translate_const=int(96 * 0.45), img_mean=FILL)
  per_op = {name: candidates(img, [[(name, 1., 9)]], hparams) for name in A.RAND_TRANSFORMS}
  hits = []
  for i in range(24):
    out = fn(img, tf.constant([7, i], tf.int64)).numpy()
    (got_mad, got_max), name = min((closest(out, c), n) for n, c in per_op.items())
    assert got_mad <= FLOAT_MAD and got_max <= 1, f'seed {i}: nearest timm output ({name}) MAD {got_mad}'
    hits.append(name)
  assert len(set(hits)) >= 8, hits


def test_auto_augment_output_is_a_timm_output():
  img = natural_images()[2]
  fn = compiled('original', 96)
  hparams = dict(translate_const=int(96 * 0.45), img_mean=FILL)
  allowed = candidates(img, A.auto_augment_policy('original'), hparams)
  outs = set()
  for i in range(16):
    out = fn(img, tf.constant([11, i], tf.int64)).numpy()
    got_mad, got_max = closest(out, allowed)
    assert got_mad <= FLOAT_MAD and got_max <= 1, f'seed {i}: not an AutoAugment(original) output'
    outs.add(out.tobytes())
  assert len(outs) >= 6


def test_deterministic_and_same_in_tf_data():
  """Same seed, same image (eager, tf.function, parallel tf.data map); different seeds differ;
  magnitude noise (mstd) is seeded too."""
  imgs = natural_images()[:3]
  img = imgs[0]
  eager = A.build_train_ops('rand-m9-n2-mstd0.5-inc1', img_size=112, mean=IMAGENET_DEFAULT_MEAN)
  graph = compiled('rand-m9-n2-mstd0.5-inc1')
  seeds = [tf.constant([5, i], tf.int64) for i in range(12)]
  first = [graph(img, s).numpy() for s in seeds]
  for s, f in zip(seeds[:3], first):
    np.testing.assert_array_equal(eager(img, s).numpy(), f)
    np.testing.assert_array_equal(graph(img, s).numpy(), f)
  assert len({f.tobytes() for f in first}) >= 9
  ds = tf.data.Dataset.range(12).map(      # reuses the traced function: no second trace
    lambda i: (i, graph(tf.constant(img), tf.stack([tf.constant(5, tf.int64), i]))),
    num_parallel_calls=4, deterministic=False)
  for i, out in ds.as_numpy_iterator():
    np.testing.assert_array_equal(out, first[i])


# ---------------------------------------------------------------------------------------------
# Random erasing
# ---------------------------------------------------------------------------------------------

def erase_stats_ours(n, h, w, **kw):
  fn = tf.function(functools.partial(A.random_erasing, **kw))
  ones = tf.ones([h, w, 3])
  return np.stack([fn(ones, tf.constant([1, i], tf.int64)).numpy() for i in range(n)])


def erase_stats_timm(n, h, w, **kw):
  random.seed(0)
  re = RandomErasing(device='cpu', **kw)
  import torch
  return np.stack([re(torch.ones(3, h, w)).numpy().transpose(1, 2, 0) for _ in range(n)])


@pytest.mark.parametrize('kw', [dict(probability=0.6, mode='const'),
                                dict(probability=1.0, mode='const', max_count=3, min_aspect=0.5)])
def test_random_erasing_distribution_matches_timm(kw):
  """Same distribution as timm's RandomErasing: how often an image is erased, and the mean and
  spread of the erased area (400 draws each; standard error ~0.006)."""
  n, h, w = 400, 24, 40
  ours = erase_stats_ours(n, h, w, **kw)
  ref = erase_stats_timm(n, h, w, **kw)
  frac_ours = (ours == 0).all(-1).mean(axis=(1, 2))
  frac_ref = (ref == 0).all(-1).mean(axis=(1, 2))
  assert abs((frac_ours > 0).mean() - (frac_ref > 0).mean()) < 0.08
  assert abs(frac_ours.mean() - frac_ref.mean()) < 0.03
  assert abs(frac_ours.std() - frac_ref.std()) < 0.03
  assert set(np.unique(ours)) <= {0., 1.}


def test_random_erasing_modes():
  h, w = 48, 64
  base = tf.fill([h, w, 3], 7.)
  seed = tf.constant([0, 2], tf.int64)
  for mode in ('const', 'rand', 'pixel'):
    out = A.random_erasing(base, seed, probability=1., mode=mode, min_area=0.2, max_area=0.3).numpy()
    box = np.any(out != 7., axis=-1)
    ys, xs = np.nonzero(box)
    assert box.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)   # one rectangle
    assert 0.15 * h * w <= box.sum() <= 0.35 * h * w
    inside = out[box]
    if mode == 'const':
      assert np.all(inside == 0.)
    elif mode == 'rand':
      assert np.all(inside == inside[0]) and len(np.unique(inside[0])) == 3
    else:
      assert abs(inside.mean()) < 0.15 and abs(inside.std() - 1.) < 0.15
    np.testing.assert_array_equal(out, A.random_erasing(base, seed, probability=1., mode=mode,
                                                        min_area=0.2, max_area=0.3).numpy())
  np.testing.assert_array_equal(A.build_random_erasing(0.)(base, seed).numpy(), base.numpy())
  with pytest.raises(ValueError, match='mode'):
    A.build_random_erasing(0.25, mode='noise')
  with pytest.raises(ValueError, match='float HWC'):
    A.random_erasing(tf.zeros([h, w, 3], tf.uint8), seed)
  erased = A.build_random_erasing(1., mode='const')(base, seed).numpy()
  assert 0 < (erased == 0.).all(-1).sum() < h * w


# --- colour jitter: torchvision's ColorJitter on PIL images, as timm's --color-jitter runs it ---

@pytest.mark.parametrize('factor', [-0.5, -0.2, -0.07, 0.0, 0.13, 0.2, 0.5])
def test_hue_matches_torchvision_pil(factor):
  import torchvision.transforms.functional as TF
  for img in natural_images():
    ref = np.asarray(TF.adjust_hue(Image.fromarray(img), factor))
    assert mad(A.hue(img, factor), ref) == (EXACT, 0), factor


def test_color_jitter_ranges_are_torchvision_colorjitter():
  """Ranges from timm's own transform (``--color-jitter 0.4``) and Vega's ImageNet default."""
  from timm.data import create_transform
  from torchvision.transforms import ColorJitter
  timm_cj = [t for t in create_transform(224, is_training=True, color_jitter=0.4).transforms
             if isinstance(t, ColorJitter)][0]
  for ours, tv in zip(A.color_jitter_ranges(0.4, 0.4, 0.4), (timm_cj.brightness, timm_cj.contrast,
                                                            timm_cj.saturation, timm_cj.hue)):
    assert ours == (None if tv is None else tuple(tv))
  vega = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2)
  assert A.color_jitter_ranges(0.4, 0.4, 0.4, 0.2) == (
      tuple(vega.brightness), tuple(vega.contrast), tuple(vega.saturation), tuple(vega.hue))
  with pytest.raises(ValueError, match=r'hue range \(-0.7, 0.7\) must lie within'):
    A.color_jitter_ranges(hue=0.7)


def test_color_jitter_matches_torchvision_with_the_same_draws():
  """Our draws (order, factors) applied by torchvision's functional ops in that order on the PIL
  image give our output: blends within the float tolerance, hue exact."""
  import torchvision.transforms.functional as TF
  tv_fns = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
  ranges = A.color_jitter_ranges(0.4, 0.4, 0.4, 0.2)
  orders = set()
  for i, img in enumerate(natural_images()):
    for j in range(3):
      seed = tf.constant([i, j], tf.int64)
      order, factors = (t.numpy() for t in A.color_jitter_params(seed, ranges))
      orders.add(tuple(order))
      assert sorted(order) == [0, 1, 2, 3]
      for f, (lo, hi) in zip(factors, ranges):
        assert lo <= f <= hi
      ref = Image.fromarray(img)
      for k in order:
        ref = tv_fns[k](ref, float(factors[k]))
      ours = A.color_jitter(img, seed, 0.4, 0.4, 0.4, 0.2)
      m, top = mad(ours, np.asarray(ref))
      assert m <= FLOAT_MAD and top <= 1, (i, j, m, top)
  assert len(orders) > 3   # the order is drawn, not fixed


def test_color_jitter_in_the_pipeline_follows_timm():
  """timm turns colour jitter off under an --aa string; a number x means (x, x, x)."""
  from ghostnets_jax.data import preprocess as P
  kw = dict(scale=(0.08, 1.0), ratio=(0.75, 4 / 3), interpolation='bilinear', hflip=0.5,
            mean=(0.5,) * 3, std=(0.5,) * 3)
  assert 'color_jitter(0.4, 0.4, 0.4, 0.0)' in P.train_spec(224, color_jitter=0.4, **kw)
  vega = P.train_spec(224, color_jitter=(0.4, 0.4, 0.4, 0.2), **kw)
  assert 'color_jitter(0.4, 0.4, 0.4, 0.2)' in vega
  assert 'color_jitter' not in P.train_spec(224, color_jitter=0.4, auto_augment='rand-m9', **kw)
  assert 'color_jitter' not in P.train_spec(224, color_jitter=(), **kw)
  with pytest.raises(ValueError, match='color_jitter must be a number or'):
    P.train_spec(224, color_jitter=(0.4, 0.4), **kw)
  img = natural_images()[0]
  op = P.get_op('color_jitter(0.4, 0.4, 0.4, 0.2)')
  seed = tf.constant([3, 4], tf.int64)
  want = A.color_jitter(img, seed, 0.4, 0.4, 0.4, 0.2)
  np.testing.assert_array_equal(op(img, seed), want)
  np.testing.assert_array_equal(tf.function(op)(tf.constant(img), seed), want)  # as in tf.data
