"""Training input pipeline throughput alone (no model): is data or compute the bottleneck?

  PYTHONPATH=. python benchmarks/input_pipeline.py --batch 32 --size 224
  PYTHONPATH=. python benchmarks/input_pipeline.py --builder my_package.data:train_batches

By default it times the standard ImageNet training pipeline in ``tf.data`` over JPEGs made
locally (``--images`` files of ImageNet-like sizes and JPEG quality, written once to
``--dir``): read -> decode and random-resized-crop (``sample_distorted_bounding_box``, area
8-100 %, aspect 3/4-4/3; only the crop is decoded) -> bilinear resize -> random flip ->
normalise (ImageNet mean/std) -> batch -> prefetch, converted to numpy as a trainer consumes it.

``--builder module:function`` times any other pipeline instead: the function is called as
``function(files=..., labels=..., batch_size=..., image_size=...)`` and returns an iterable of
batches (dicts or tuples of arrays, the images first or under 'image'); pass the trainer's data
pipeline here. If ``benchmarks/results/train_step.json`` exists, the pipeline's rate is set
against each model's training-step rate from it.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from typing import Any, Callable, Iterable, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ghostnets_jax import benchmark as bm  # noqa: E402
from ghostnets_jax.registry import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

# Typical ImageNet training-image sizes (width, height) and JPEG quality.
IMAGE_SIZES = ((500, 375), (375, 500), (500, 333), (500, 500), (640, 480), (333, 500))
JPEG_QUALITY = 90


def make_jpegs(directory: str, n: int, seed: int = 0) -> list[str]:
  """Writes ``n`` smooth random JPEGs (compressing like photos, unlike white noise); reuses them."""
  import numpy as np
  from PIL import Image
  os.makedirs(directory, exist_ok=True)
  rng = np.random.RandomState(seed)
  files = []
  for i in range(n):
    path = os.path.join(directory, f'{i:05d}.jpg')
    files.append(path)
    if os.path.exists(path):
      continue
    w, h = IMAGE_SIZES[i % len(IMAGE_SIZES)]
    coarse = rng.randint(0, 256, (h // 16 + 1, w // 16 + 1, 3)).astype(np.uint8)
    img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
    detail = rng.normal(0, 12, (h, w, 3))
    pixels = np.clip(np.asarray(img, np.float32) + detail, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=JPEG_QUALITY)
  return files


def tf_train_pipeline(files: Sequence[str], labels: Sequence[int], batch_size: int,
                      image_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                      std: Sequence[float] = IMAGENET_STD, seed: int = 0) -> Iterable[Any]:
  """The standard ImageNet training pipeline in ``tf.data`` (endless, shuffled, numpy batches)."""
  import tensorflow as tf
  tf.config.set_visible_devices([], 'GPU')
  mean_px = tf.constant(mean, tf.float32) * 255.0
  std_px = tf.constant(std, tf.float32) * 255.0

  def load(path, label):
    data = tf.io.read_file(path)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        tf.io.extract_jpeg_shape(data), tf.zeros([0, 0, 4], tf.float32), area_range=(0.08, 1.0),
        aspect_ratio_range=(3 / 4, 4 / 3), max_attempts=10, use_image_if_no_bounding_boxes=True)
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.io.decode_and_crop_jpeg(data, window, channels=3)
    image = tf.image.resize(image, (image_size, image_size), 'bilinear')
    image = tf.image.random_flip_left_right(image)
    return (image - mean_px) / std_px, label

  ds = tf.data.Dataset.from_tensor_slices((list(files), list(labels)))
  ds = ds.repeat().shuffle(len(files), seed=seed)
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.threading.private_threadpool_size = bm.cpu_threads()
  return ds.with_options(options).as_numpy_iterator()


def images_of(batch: Any) -> Any:
  if isinstance(batch, dict):
    return batch['image']
  return batch[0] if isinstance(batch, (tuple, list)) else batch


def measure(batches: Iterable[Any], n: int, warmup: int) -> dict[str, float]:
  """Images per second over ``n`` batches after ``warmup`` batches (buffers filled, threads up)."""
  it = iter(batches)
  t0 = time.perf_counter()
  for _ in range(warmup):
    shape = images_of(next(it)).shape
  startup = time.perf_counter() - t0
  t = time.perf_counter()
  count = 0
  for _ in range(n):
    count += images_of(next(it)).shape[0]
  seconds = time.perf_counter() - t
  return {'img_s': count / seconds, 'warmup_s': startup, 'batch_shape': list(shape)}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--builder', default='', help='module:function building the batches (default: ours)')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--size', type=int, default=224)
  p.add_argument('--images', type=int, default=512, help='distinct JPEG files')
  p.add_argument('--dir', default='/tmp/ghostnets_jax_bench_jpegs')
  p.add_argument('--batches', type=int, default=40, help='timed batches')
  p.add_argument('--warmup', type=int, default=5)
  p.add_argument('--threads', type=int, default=None)
  p.add_argument('--train-step-json', default='benchmarks/results/train_step.json')
  p.add_argument('--json', default='benchmarks/results/input_pipeline.json')
  return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict:
  a = parse_args(argv)
  if a.threads:
    bm.limit_cpus(a.threads)
  info = bm.machine()
  print(bm.describe(info), flush=True)
  files = make_jpegs(a.dir, a.images)
  labels = [i % 1000 for i in range(len(files))]
  build: Callable[..., Iterable[Any]] = tf_train_pipeline
  if a.builder:
    mod, fn = a.builder.split(':')
    build = getattr(importlib.import_module(mod), fn)
  mb = sum(os.path.getsize(f) for f in files) / len(files) / 1024
  r = measure(build(files=files, labels=labels, batch_size=a.batch, image_size=a.size),
              a.batches, a.warmup)
  row = {'pipeline': a.builder or 'tf.data (benchmarks/input_pipeline.py)', 'batch': a.batch,
         'size': a.size, 'mean_jpeg_kib': mb, **r}
  print(f'{row["pipeline"]}: {r["img_s"]:.1f} img/s ({a.batch} x {a.size}x{a.size}, '
        f'{len(files)} JPEGs of {mb:.0f} KiB on average; first {a.warmup} batches in {r["warmup_s"]:.1f} s)')
  if os.path.exists(a.train_step_json):
    with open(a.train_step_json) as f:
      steps = json.load(f)['rows']
    for s in steps:
      need = s['jax_img_s']
      verdict = 'input-bound' if r['img_s'] < need else 'compute-bound'
      print(f'  {s["model"]} training step (batch {s["batch"]}): {need:.1f} img/s -> the pipeline '
            f'feeds {r["img_s"] / need:.2f}x that: {verdict}')
  bm.write_json(a.json, info, vars(a), [row])
  return row


if __name__ == '__main__':
  main()
