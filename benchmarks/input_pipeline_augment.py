"""Host input-pipeline throughput with and without RandAugment (tf.data, this machine's CPUs).

Pipeline per image: JPEG bytes -> Inception crop (stateless sample_distorted_bounding_box +
decode_and_crop_jpeg) -> bilinear resize to 224 -> random flip -> [augmentation] -> normalise
[-> random erasing]. JPEGs are made locally from bundled photographs (scikit-image / matplotlib
sample data), 500x375 on average like ImageNet. Every configuration runs in the same process and
the configurations take turns (median of rounds); the report is images/s and the ratio to the
no-augmentation baseline.

  python benchmarks/input_pipeline_augment.py                      # rand-m9-mstd0.5 vs none
  python benchmarks/input_pipeline_augment.py --aa original --reprob 0.25 --steps 40

`make_jpegs`, `train_map`, `pipeline` and `measure` are importable for a larger input-pipeline
benchmark.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from ghostnets_jax.data import augment  # noqa: E402
from ghostnets_jax.registry import get_spec  # noqa: E402

MODEL = 'ghostnet_100'   # whose preprocessing (mean/std) the pipeline applies


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


def train_map(aa: str | None, reprob: float = 0., img_size: int = 224, base_seed: int = 0):
  """(index, jpeg) -> normalised float32 image: the training transform being measured."""
  spec = get_spec(MODEL)   # the normalisation (and fill colour) of the model being fed
  aug = augment.build_train_ops(aa, img_size=img_size, mean=spec.mean)
  erase = augment.build_random_erasing(reprob, mode='pixel')
  mean = tf.constant(spec.mean) * 255.
  std = tf.constant(spec.std) * 255.

  def fn(index, jpeg):
    seed = tf.stack([tf.constant(base_seed, tf.int64), index])
    s_crop, s_flip, s_aug, s_erase = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.image.extract_jpeg_shape(jpeg), tf.zeros([1, 0, 4]), s_crop, min_object_covered=0.,
      aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.), max_attempts=10,
      use_image_if_no_bounding_boxes=True)
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
    image = tf.image.resize(image, [img_size, img_size], 'bilinear')
    image = tf.cast(tf.clip_by_value(tf.round(image), 0., 255.), tf.uint8)
    image = tf.image.stateless_random_flip_left_right(image, s_flip)
    image = aug(image, s_aug)
    image = (tf.cast(image, tf.float32) - mean) / std
    return erase(image, s_erase)

  return fn


def pipeline(aa: str | None, jpegs: list[bytes], *, reprob: float = 0., batch_size: int = 64,
             img_size: int = 224, warmup: int = 3):
  """A started iterator over normalised training batches (warmed up: traced and compiled)."""
  ds = tf.data.Dataset.from_tensor_slices(jpegs).repeat().enumerate()
  ds = ds.map(train_map(aa, reprob, img_size), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=False)
  it = iter(ds.batch(batch_size, drop_remainder=True).prefetch(2))
  for _ in range(warmup):
    next(it).numpy()
  return it


def images_per_second(it, batch_size: int, steps: int) -> float:
  start = time.perf_counter()
  for _ in range(steps):
    next(it).numpy()
  return steps * batch_size / (time.perf_counter() - start)


def measure(configs: dict[str, tuple[str | None, float]], jpegs: list[bytes], *, batch_size: int = 64,
            steps: int = 20, rounds: int = 3) -> dict[str, float]:
  """Median images/s per config {name: (aa, reprob)}; the configs take turns, `rounds` times, so
  a change in machine load hits all of them alike."""
  its = {name: pipeline(aa, jpegs, reprob=reprob, batch_size=batch_size)
         for name, (aa, reprob) in configs.items()}
  runs = {name: [] for name in configs}
  for _ in range(rounds):
    for name, it in its.items():
      runs[name].append(images_per_second(it, batch_size, steps))
  return {name: float(np.median(v)) for name, v in runs.items()}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--aa', default='rand-m9-mstd0.5', help='timm augmentation string')
  parser.add_argument('--reprob', type=float, default=0., help='also measure + random erasing')
  parser.add_argument('--batch-size', type=int, default=64)
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--images', type=int, default=64, help='distinct JPEGs to cycle through')
  parser.add_argument('--rounds', type=int, default=3, help='configs take turns this often')
  args = parser.parse_args(argv)
  jpegs = make_jpegs(args.images)
  configs = {'baseline (crop, flip, normalise)': (None, 0.), f'+ {args.aa}': (args.aa, 0.)}
  if args.reprob > 0:
    configs[f'+ {args.aa} + erasing p={args.reprob}'] = (args.aa, args.reprob)
  print(f'CPUs: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, batch {args.batch_size}, '
        f'{args.rounds} x {args.steps} timed batches per config (median), 224x224')
  result = measure(configs, jpegs, batch_size=args.batch_size, steps=args.steps, rounds=args.rounds)
  base = result[next(iter(configs))]
  for name, ips in result.items():
    print(f'{name:45s} {ips:8.1f} images/s   ratio {ips / base:.2f}')


if __name__ == '__main__':
  main()
