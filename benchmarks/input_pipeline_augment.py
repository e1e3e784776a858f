"""Where the training input pipeline spends its time: per stage and per augmentation op, ours
(tf.data, ``ghostnets_jax.data``) beside timm's PIL transforms, one thread, CPU ms per image.

  PYTHONPATH=. python benchmarks/input_pipeline_augment.py --recipe repghost
  PYTHONPATH=. python benchmarks/input_pipeline_augment.py --recipe s_ghostnet --ops ''

Stages: the recipe's ``train_preprocess`` spec (``benchmarks/input_pipeline.py`` builds it through
the trainer) is timed cumulatively, op after op (decode + random-resized crop, flip,
RandAugment / AutoAugment / colour jitter, normalise, random erasing), in tf.data with one
thread, on JPEG bytes; timm's ``create_transform`` of the same recipe likewise, cumulatively,
in a Python loop (``ToTensor`` counted with normalise). Each stage's cost is the difference of
consecutive totals. Ops: each RandAugment / AutoAugment op at magnitude 9 (std 0.5, as
``rand-m9-mstd0.5``) with probability 1 on 224x224 crops: ours
``ghostnets_jax.data.augment.apply_op`` in tf.data (one thread; the first row is the same map
with no op, tf.data's own cost per image, already subtracted from the others) against timm's
``AugmentOp``. Ours and timm alternate in rounds; medians.

``make_jpegs`` makes the ImageNet-sized JPEGs all input-pipeline benchmarks use.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
from typing import Callable, Optional

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def _photos() -> list[np.ndarray]:
  photos = []
  try:
    import skimage.data
    photos += [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(),
               skimage.data.rocket()]
  except ImportError:
    pass
  import matplotlib.cbook
  with matplotlib.cbook.get_sample_data('grace_hopper.jpg') as f:
    photos.append(np.asarray(Image.open(f).convert('RGB')))
  return photos


def make_jpegs(n: int = 64, seed: int = 0, size: tuple[int, int] = (500, 375)) -> list[bytes]:
  """`n` distinct JPEGs (quality 90): random crops of the bundled photos, resized around `size`."""
  rng = np.random.RandomState(seed)
  photos = _photos()
  out = []
  for i in range(n):
    photo = photos[i % len(photos)]
    h, w = photo.shape[:2]
    ch, cw = rng.randint(h // 2, h + 1), rng.randint(w // 2, w + 1)
    y, x = rng.randint(0, h - ch + 1), rng.randint(0, w - cw + 1)
    scale = rng.uniform(0.8, 1.25)
    tw, th = int(size[0] * scale), int(size[1] * scale)
    img = Image.fromarray(photo[y:y + ch, x:x + cw]).resize((tw, th), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format='JPEG', quality=90)
    out.append(buf.getvalue())
  return out


def tf_cpu_ms(fn: Callable, inputs: list, n: int, warmup: int = 64) -> float:
  """CPU ms per element of ``fn(x, seed)`` mapped over ``inputs`` (cycled) in tf.data, 1 thread."""
  import tensorflow as tf
  opts = tf.data.Options()
  opts.threading.private_threadpool_size = 1
  opts.threading.max_intra_op_parallelism = 1
  ds = tf.data.Dataset.from_tensor_slices(inputs).repeat().enumerate()
  ds = ds.map(lambda i, x: fn(x, tf.stack([tf.constant(7, tf.int64), i])))
  ds = ds.map(lambda y: tf.reduce_sum(tf.cast(y[:1], tf.float32))).with_options(opts)
  it = iter(ds.take(n + warmup))
  for _ in range(warmup):   # trace, compile the XLA kernels of the branches (ops, resamplers) hit
    next(it)
  c0 = time.process_time()
  for _ in range(n):
    next(it)
  return 1e3 * (time.process_time() - c0) / n


def py_cpu_ms(fn: Callable, inputs: list, n: int) -> float:
  for x in inputs[:4]:
    fn(x)
  c0 = time.process_time()
  for i in range(n):
    fn(inputs[i % len(inputs)])
  return 1e3 * (time.process_time() - c0) / n


def _torch_safe_imports() -> None:
  # torch and timm (torchvision) before TensorFlow: torchvision's ops segfault when loaded after it
  import timm.data  # noqa: F401
  import torch
  torch.set_num_threads(1)


def stage_rows(recipe: str, jpegs: list[bytes], n: int, rounds: int) -> list[dict]:
  """Cost per stage of the recipe's pipeline, ours (tf.data) and timm (PIL), CPU ms / image."""
  from benchmarks import input_pipeline as ip
  from ghostnets_jax.data import preprocess
  config = ip.recipe_config(recipe)
  spec, size = ip.our_spec(config)
  ops = preprocess.split_spec(spec)
  timm_t = ip.timm_transform(ip.timm_kwargs(config, size)).transforms
  # timm's list: crop, flip, aug, ToTensor, Normalize[, RandomErasing]: ToTensor goes with normalise
  timm_end = [k if k < 3 else k + 1 for k in range(1, len(ops) + 1)]
  decode = lambda b: Image.open(io.BytesIO(b)).convert('RGB')

  def timm_prefix(end):
    def run(b):
      x = decode(b)
      for t in timm_t[:end]:
        x = t(x)
      return x
    return run

  totals = {k: ([], []) for k in range(len(ops))}
  for _ in range(rounds):
    for k in range(len(ops)):
      totals[k][0].append(tf_cpu_ms(preprocess.compose(ops[:k + 1]), jpegs, n))
      totals[k][1].append(py_cpu_ms(timm_prefix(timm_end[k]), jpegs, n))
  rows, prev = [], (0., 0.)
  for k, op in enumerate(ops):
    ours, timm = (float(np.median(v)) for v in totals[k])
    rows.append({'stage': op.split('(')[0] + (' (+ decode)' if k == 0 else ''),
                 'ours_ms': ours - prev[0], 'timm_ms': timm - prev[1]})
    prev = (ours, timm)
  rows.append({'stage': 'total', 'ours_ms': prev[0], 'timm_ms': prev[1]})
  return rows


def op_rows(names: list[str], jpegs: list[bytes], n: int, rounds: int, size: int = 224) -> list[dict]:
  """Cost of each RandAugment / AutoAugment op (magnitude 9, std 0.5, probability 1)."""
  import tensorflow as tf
  from timm.data.auto_augment import AugmentOp
  from ghostnets_jax.data import augment, preprocess
  from ghostnets_jax.registry import get_spec
  crop = preprocess.compose([f'inception_crop({size})'])
  crops = [crop(tf.constant(b), tf.constant([0, i], tf.int64)).numpy() for i, b in enumerate(jpegs)]
  pil = [Image.fromarray(c) for c in crops]
  fill = tuple(min(255, round(255 * v)) for v in get_spec('ghostnet_100').mean)  # ImageNet's
  hp = augment.Hparams(fill=fill, translate_const=float(int(size * 0.45)), magnitude_std=0.5)
  timm_hp = {'img_mean': fill, 'translate_const': int(size * 0.45), 'magnitude_std': 0.5}
  calls = {'(tf.data map, no op)': (lambda x, s: x, None)}
  for name in names:
    calls[name] = (lambda x, s, name=name: augment.apply_op(name, x, s, 9., 1., hp),
                   AugmentOp(name, prob=1.0, magnitude=9, hparams=timm_hp))
  runs = {name: ([], []) for name in calls}
  for _ in range(rounds):
    for name, (ours, timm) in calls.items():
      runs[name][0].append(tf_cpu_ms(ours, crops, n))
      runs[name][1].append(py_cpu_ms(timm, pil, n) if timm else 0.)
  base = float(np.median(runs['(tf.data map, no op)'][0]))
  return [{'op': name, 'ours_ms': float(np.median(o)) - (base if name[0] != '(' else 0.),
           'timm_ms': float(np.median(t))} for name, (o, t) in runs.items()]


def table(rows: list[dict], key: str) -> str:
  out = [f'| {key} | ours CPU ms/img | timm CPU ms/img | ours / timm |', '|---|---:|---:|---:|']
  for r in rows:
    ratio = f'{r["ours_ms"] / r["timm_ms"]:.2f}' if r['timm_ms'] > 0.05 else '-'
    out.append(f'| {r[key]} | {r["ours_ms"]:.2f} | {r["timm_ms"]:.2f} | {ratio} |')
  return '\n'.join(out)


def main(argv: Optional[list[str]] = None) -> tuple[list[dict], list[dict]]:
  from benchmarks.input_pipeline import RECIPES
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--recipe', default='repghost', choices=list(RECIPES) + [''],
                 help="per-stage table for this recipe ('' for none)")
  p.add_argument('--ops', default=','.join(
      ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize', 'PosterizeOriginal', 'Solarize',
       'SolarizeAdd', 'Color', 'Contrast', 'Brightness', 'Sharpness', 'ShearX', 'ShearY',
       'TranslateXRel', 'TranslateYRel')), help="comma-separated augment ops ('' for none)")
  p.add_argument('--images', type=int, default=32, help='distinct JPEGs cycled through')
  p.add_argument('--n', type=int, default=64, help='timed images per measurement')
  p.add_argument('--rounds', type=int, default=3)
  a = p.parse_args(argv)
  _torch_safe_imports()
  import tensorflow as tf
  tf.config.threading.set_inter_op_parallelism_threads(1)
  tf.config.threading.set_intra_op_parallelism_threads(1)
  from ghostnets_jax import timing as bm
  print(bm.describe(bm.machine()), flush=True)
  jpegs = make_jpegs(a.images)
  stages = stage_rows(a.recipe, jpegs, a.n, a.rounds) if a.recipe else []
  if stages:
    print(f'\n{a.recipe}, 1 thread, {a.rounds} rounds x {a.n} images (median), load average '
          f'{os.getloadavg()}\n' + table(stages, 'stage'), flush=True)
  ops = op_rows([o for o in a.ops.split(',') if o], jpegs, a.n, a.rounds) if a.ops else []
  if ops:
    print(f'\naugment ops on 224x224, 1 thread, load average {os.getloadavg()}\n'
          + table(ops, 'op'), flush=True)
  return stages, ops


if __name__ == '__main__':
  main()
