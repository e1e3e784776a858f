"""The training input pipeline of each recipe, side by side with timm's PIL loader, per core.

  PYTHONPATH=. python benchmarks/input_pipeline.py                       # 3 recipes, 1 and 2 threads
  PYTHONPATH=. python benchmarks/input_pipeline.py --recipes repghost --threads 1 --rounds 5

Ours is the trainer's own code path: the recipe's config (``configs/<family>.py``) goes through
``ghostnets_jax.train.run_config.resolve`` to the ``train_preprocess`` spec, which
``ghostnets_jax.data.pipeline.TrainIterator`` runs in tf.data (fetch serialized TFDS examples by
index, parse, decode only the crop window, random-resized crop, flip, RandAugment / AutoAugment /
colour jitter, normalise, random erasing, batch, numpy) over an in-memory record source of
locally made JPEGs (``make_jpegs``: ImageNet-sized, ~500x375). timm's side is
``timm.data.create_transform(..., is_training=True)`` with the same recipe arguments over the
same JPEG bytes (PIL decode of the whole image, as timm's ``ImageDataset`` does) in a
``torch.utils.data.DataLoader``: ``num_workers=0`` for 1 thread, ``num_workers=N`` for N
threads. Threads: ours sets tf.data's private thread pool to N (TF's own pools to 1); torch
runs with ``torch.set_num_threads(1)`` (each worker as well).

Mixup / CutMix are not host work in either: the recipes measured here have none, and where a
recipe has them this project applies them on the accelerator inside the training step
(``ghostnets_jax.train.step``), as timm's ``train.py`` applies ``Mixup`` to the batch on the GPU.

Only one pipeline is alive at a time (no background prefetching steals the CPU from another):
every configuration is built, warmed up (its first batch: tracing, XLA compilation, worker start
are left out), timed over ``--batches``, then shut down; configurations alternate in rounds and
the median is reported, with the ratio ours / timm from the same round. CPU seconds per image (all
threads and worker processes) are reported beside wall-clock images/s: on a loaded machine they
are the steadier measure of work per image.
"""
from __future__ import annotations

import argparse
import faulthandler
import io
import os
import sys
import time
from typing import Any, Callable, Iterator, Optional

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks.input_pipeline_augment import make_jpegs  # noqa: E402
from ghostnets_jax import timing as bm  # noqa: E402

# name -> (config module, variant): the three training recipes with the heaviest host pipelines
RECIPES = {
    'repghost': ('repghost', 'repghostnet_150'),      # rand-m9-mstd0.5, erasing 0.2, bilinear
    'ghostnetv3': ('ghostnetv3', 'ghostnetv3_100'),   # colour jitter 0.4, bicubic
    's_ghostnet': ('s_ghostnet', 's_ghostnet_b1'),    # AutoAugment 'original', bicubic, 240
}


def recipe_config(name: str):
  import importlib
  module, variant = RECIPES[name]
  return importlib.import_module(f'configs.{module}').get_config(variant)


def our_spec(config) -> tuple[str, int]:
  """The trainer's ``train_preprocess`` spec and image size for ``config``."""
  from ghostnets_jax.train import mesh as mesh_lib, run_config
  r = run_config.resolve(config, 1000, None, mesh_lib.make_mesh())
  return r.train_preprocess, r.image_size


def timm_kwargs(config, size: int) -> dict[str, Any]:
  """``timm.data.create_transform`` arguments equivalent to the recipe's ``config.aug``."""
  from ghostnets_jax.registry import get_spec
  a, spec = config.aug, get_spec(config.model)
  jitter = tuple(a.color_jitter) if not isinstance(a.color_jitter, (int, float)) else a.color_jitter
  return dict(input_size=size, is_training=True, scale=tuple(a.crop_scale), ratio=tuple(a.crop_ratio),
              hflip=a.hflip, vflip=0., color_jitter=jitter or 0., auto_augment=a.auto_augment or None,
              interpolation=a.interpolation, mean=tuple(a.mean or spec.mean),
              std=tuple(a.std or spec.std), re_prob=a.reprob, re_mode=a.remode, re_count=a.recount)


def timm_transform(kwargs: dict[str, Any]):
  """timm's training transform; its RandAugment / AutoAugment ops resample bilinear or bicubic at
  random, as ours do (timm's ``train.py`` default ``--train-interpolation random``), not with the
  crop's fixed interpolation that ``create_transform`` would pass them."""
  from PIL import Image
  import timm.data
  t = timm.data.create_transform(**kwargs)
  for step in t.transforms:
    ops = list(getattr(step, 'ops', [])) + [op for sub in getattr(step, 'policy', []) for op in sub]
    for op in ops:
      op.kwargs['resample'] = (Image.BILINEAR, Image.BICUBIC)
  return t


class _JpegDataset:
  """timm's ``ImageDataset`` on in-memory JPEGs: PIL open, convert to RGB, transform."""

  def __init__(self, jpegs: list[bytes], transform):
    self.jpegs, self.transform = jpegs, transform

  def __len__(self) -> int:
    return 1 << 30

  def __getitem__(self, i: int):
    from PIL import Image
    img = Image.open(io.BytesIO(self.jpegs[i % len(self.jpegs)])).convert('RGB')
    return self.transform(img), i % 1000


def _torch_one_thread(_worker_id: int = 0) -> None:
  import torch
  torch.set_num_threads(1)


class _Records:
  def __init__(self, items: list[bytes]):
    self.items = items

  def __getitems__(self, keys):
    return [self.items[k] for k in keys]


def memory_source(jpegs: list[bytes]):
  """A :class:`ghostnets_jax.data.datasets.Source` of imagenet2012-like records held in memory."""
  import tensorflow_datasets as tfds
  from ghostnets_jax.data.datasets import Source
  features = tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
      'label': tfds.features.ClassLabel(num_classes=1000)})
  records = [features.serialize_example({'image': io.BytesIO(j), 'label': i % 1000})
             for i, j in enumerate(jpegs)]
  return Source('in_memory', 'train', _Records(records), features, len(records))


def our_loader(source, spec: str, batch: int, threads: int) -> tuple[Iterator, Callable[[], None]]:
  from ghostnets_jax.data import pipeline
  sampler = pipeline.make_sampler('shuffle', len(source), batch, seed=0, process_index=0,
                                  process_count=1)
  it = pipeline.TrainIterator(source, sampler, spec, batch, threads=threads)
  return (b['image'] for b in it), lambda: None


def timm_loader(dataset, batch: int, threads: int) -> tuple[Iterator, Callable[[], None]]:
  import torch
  loader = torch.utils.data.DataLoader(
      dataset, batch_size=batch, shuffle=False, num_workers=threads if threads > 1 else 0,
      worker_init_fn=_torch_one_thread if threads > 1 else None, drop_last=True)
  it = iter(loader)
  workers = [w.pid for w in getattr(it, '_workers', [])]

  def close():
    if hasattr(it, '_shutdown_workers'):
      it._shutdown_workers()   # pylint: disable=protected-access
  gen = (x.numpy() for x, _ in it)
  return _WithPids(gen, workers), close


class _WithPids:
  def __init__(self, gen, pids):
    self.gen, self.pids = gen, pids

  def __iter__(self):
    return self

  def __next__(self):
    return next(self.gen)


def _cpu_seconds(pids: list[int]) -> float:
  """CPU time of this process (all threads) plus that of ``pids`` (worker processes)."""
  total = time.process_time()
  tick = os.sysconf('SC_CLK_TCK')
  for pid in pids:
    try:
      with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
      total += (int(fields[11]) + int(fields[12])) / tick   # utime, stime
    except OSError:
      pass
  return total


def time_loader(make: Callable[[], tuple[Iterator, Callable[[], None]]], batches: int,
                batch: int, warmup: int) -> tuple[float, float]:
  """(images/s, CPU seconds per image) over ``batches`` batches after ``warmup`` batches (the
  first pays for tracing / compilation / worker start, the next drain what was prefetched
  meanwhile, so the timed ones are produced while the consumer waits)."""
  it, close = make()
  try:
    for _ in range(warmup):
      next(it)
    pids = getattr(it, 'pids', [])
    c0, t0 = _cpu_seconds(pids), time.perf_counter()
    for _ in range(batches):
      next(it)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds(pids) - c0
  finally:
    close()
    del it
  n = batches * batch
  return n / wall, cpu / n


def ratios(runs: dict[tuple[str, str, int], list[tuple[float, float]]]) -> list[dict[str, Any]]:
  """Median per (recipe, threads) of ours and timm, and the median of the per-round ratios."""
  rows = []
  for (recipe, impl, threads), ours in runs.items():
    if impl != 'ours':
      continue
    timm = runs[(recipe, 'timm', threads)]
    rows.append({
        'recipe': recipe, 'threads': threads,
        'ours_img_s': float(np.median([r[0] for r in ours])),
        'timm_img_s': float(np.median([r[0] for r in timm])),
        'ours_cpu_ms': 1e3 * float(np.median([r[1] for r in ours])),
        'timm_cpu_ms': 1e3 * float(np.median([r[1] for r in timm])),
        'ratio_img_s': float(np.median([o[0] / t[0] for o, t in zip(ours, timm)])),
        'ratio_cpu': float(np.median([t[1] / o[1] for o, t in zip(ours, timm)])),
    })
  return rows


def verdicts(rows: list[dict[str, Any]], steps: list[dict[str, Any]]) -> list[str]:
  """One line per (recipe and threads, model of ``benchmarks/train_step.py``'s JSON): does our
  pipeline keep up with that training step on this machine?"""
  out = []
  for r in rows:
    for s in steps:
      need = s['jax_img_s']
      verdict = 'compute-bound' if r['ours_img_s'] >= need else 'input-bound'
      out.append(f'{r["recipe"]} ({r["threads"]} threads) vs {s["model"]} train step (batch '
                 f'{s["batch"]}, {need:.1f} img/s): pipeline feeds {r["ours_img_s"] / need:.2f}x '
                 f'-> {verdict}')
  return out


def table(rows: list[dict[str, Any]]) -> str:
  out = ['| recipe | threads | ours img/s | timm img/s | ours / timm | ours CPU ms/img | '
         'timm CPU ms/img | timm / ours CPU |', '|---|---:|---:|---:|---:|---:|---:|---:|']
  for r in rows:
    out.append(f'| {r["recipe"]} | {r["threads"]} | {r["ours_img_s"]:.1f} | {r["timm_img_s"]:.1f} | '
               f'{r["ratio_img_s"]:.2f}x | {r["ours_cpu_ms"]:.1f} | {r["timm_cpu_ms"]:.1f} | '
               f'{r["ratio_cpu"]:.2f}x |')
  return '\n'.join(out)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--recipes', default=','.join(RECIPES), help=f'comma-separated, of {list(RECIPES)}')
  p.add_argument('--threads', default='1,2', help='comma-separated thread / worker counts')
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--batches', type=int, default=4, help='timed batches per configuration per round')
  p.add_argument('--rounds', type=int, default=3, help='configurations take turns this often')
  p.add_argument('--images', type=int, default=64, help='distinct JPEGs cycled through')
  p.add_argument('--hang-s', type=float, default=600., help='abort (with tracebacks) after a round '
                 'takes this long')
  p.add_argument('--train-step-json', default='benchmarks/results/train_step.json',
                 help='if it exists, each row is set against these training-step rates')
  p.add_argument('--json', default='benchmarks/results/input_pipeline.json')
  a = p.parse_args(argv)
  unknown = sorted(set(a.recipes.split(',')) - set(RECIPES))
  if unknown:
    p.error(f'unknown recipe(s) {unknown}; choose from {list(RECIPES)}')
  return a


def main(argv: Optional[list[str]] = None) -> list[dict[str, Any]]:
  a = parse_args(argv)
  # torch and timm (torchvision) before TensorFlow: torchvision's ops segfault when loaded after it
  import timm
  import timm.data  # noqa: F401
  import torch
  import tensorflow as tf
  tf.config.threading.set_inter_op_parallelism_threads(1)
  tf.config.threading.set_intra_op_parallelism_threads(1)
  torch.set_num_threads(1)
  info = bm.machine()
  print(bm.describe(info), flush=True)
  print(f'tensorflow {tf.__version__}, torch {torch.__version__}, timm {timm.__version__}, '
        f'Pillow {__import__("PIL").__version__}', flush=True)
  jpegs = make_jpegs(a.images)
  source = memory_source(jpegs)
  threads = [int(t) for t in a.threads.split(',')]
  makers = {}
  for recipe in a.recipes.split(','):
    config = recipe_config(recipe)
    spec, size = our_spec(config)
    dataset = _JpegDataset(jpegs, timm_transform(timm_kwargs(config, size)))
    print(f'{recipe}: {spec}', flush=True)
    for n in threads:
      makers[(recipe, 'ours', n)] = lambda s=spec, n=n: our_loader(source, s, a.batch, n)
      makers[(recipe, 'timm', n)] = lambda d=dataset, n=n: timm_loader(d, a.batch, n)
  runs: dict[tuple[str, str, int], list[tuple[float, float]]] = {k: [] for k in makers}
  faulthandler.dump_traceback_later(a.hang_s, exit=True)   # a stuck pipeline fails loudly
  for rnd in range(a.rounds):
    for key, make in makers.items():
      runs[key].append(time_loader(make, a.batches, a.batch, warmup=1 + 2 * key[2]))
    faulthandler.dump_traceback_later(a.hang_s, exit=True)
    print(f'round {rnd + 1}/{a.rounds} done, load average {os.getloadavg()[0]:.1f}', flush=True)
  faulthandler.cancel_dump_traceback_later()
  rows = ratios(runs)
  kib = sum(map(len, jpegs)) / len(jpegs) / 1024
  print(f'\nbatch {a.batch}, {a.batches} timed batches x {a.rounds} rounds (median), '
        f'{len(jpegs)} JPEGs of {kib:.0f} KiB, load average at end {os.getloadavg()}')
  print(table(rows))
  if os.path.exists(a.train_step_json):
    import json
    with open(a.train_step_json) as f:
      print('\n'.join(verdicts(rows, json.load(f)['rows'])))
  bm.write_json(a.json, info, vars(a), rows)
  return rows


if __name__ == '__main__':
  main()
