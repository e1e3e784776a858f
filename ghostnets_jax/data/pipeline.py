"""Index-driven tf.data input pipeline with an exact, tiny iterator state.

Why this design (rather than grain, or clu's TfDatasetIterator): the order of examples is decided in
numpy by a *sampler* (one permutation per epoch, sliced per process), records are read by index
from TFDS array_record files, and decoding/augmentation run in tf.data with a stateless seed per
example derived from ``(seed, epoch, position)``. So

* the iterator position is two integers ``{'epoch', 'batch'}`` (a resumed run rebuilds the
  pipeline there and sees exactly the batches an uninterrupted one would; no prefetched batches
  in the checkpoint, unlike ``clu``'s ``TfDatasetIterator`` which serialises tf.data's buffers);
* the global batch at each step (and each example's augmentation) does not depend on the number
  of processes: process ``p`` of ``P`` takes rows ``[p*B/P, (p+1)*B/P)`` of every global batch;
* decoding/augmentation run as tf.data ops (parallel C++, no GIL), which is where RandAugment &
  co. live, and samplers (e.g. repeated augmentation) are plain numpy, registered by name.

Evaluation reads contiguous per-process ranges and pads the last batch with masked examples:
nothing is dropped.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterator, Optional, Protocol

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ghostnets_jax.data.datasets import Source
from ghostnets_jax.data.preprocess import compose
from ghostnets_jax.errors import ConfigError

FETCH_CHUNK = 64   # records read per random-access call


class Sampler(Protocol):
  """Decides which records make up each global batch, and which of them this process reads.

  ``epoch_indices(epoch)`` returns ``(records, positions)``: the record indices this process
  reads in ``epoch``, in order (``steps_per_epoch * local_batch`` of them, local batch after
  local batch), and each one's position in the epoch's global order (seeds its augmentation).
  """
  steps_per_epoch: int

  def epoch_indices(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    ...


_SAMPLERS: dict[str, Callable[..., Sampler]] = {}


def register_sampler(name: str) -> Callable[[Callable[..., Sampler]], Callable[..., Sampler]]:
  """Registers ``factory(num_records, global_batch, *, seed, process_index, process_count, **kw)``."""
  def deco(factory):
    if name in _SAMPLERS:
      raise ValueError(f'sampler {name!r} is registered twice')
    _SAMPLERS[name] = factory
    return factory
  return deco


def make_sampler(name: str, num_records: int, global_batch: int, *, seed: int,
                 process_index: int, process_count: int, **kwargs: Any) -> Sampler:
  if name not in _SAMPLERS:
    try:
      import ghostnets_jax.data.sampler  # noqa: F401  (optional: registers more samplers)
    except ModuleNotFoundError as e:
      if e.name != 'ghostnets_jax.data.sampler':
        raise
  if name not in _SAMPLERS:
    raise ConfigError(f'unknown sampler {name!r}; set config.data.sampler to one of {sorted(_SAMPLERS)}')
  return _SAMPLERS[name](num_records, global_batch, seed=seed, process_index=process_index,
                         process_count=process_count, **kwargs)


@register_sampler('shuffle')
@dataclasses.dataclass
class ShuffleSampler:
  """A fresh permutation every epoch (or the file order with ``shuffle=False``); the remainder
  that does not fill a global batch is left out of that epoch."""
  num_records: int
  global_batch: int
  seed: int = 0
  process_index: int = 0
  process_count: int = 1
  shuffle: bool = True

  def __post_init__(self):
    if self.global_batch % self.process_count:
      raise ConfigError(f'global batch {self.global_batch} is not divisible by the '
                        f'{self.process_count} processes; change config.batch_size.')
    self.steps_per_epoch = self.num_records // self.global_batch
    if self.steps_per_epoch == 0:
      raise ConfigError(f'the split has {self.num_records} examples, fewer than one global batch '
                        f'of {self.global_batch}; lower config.batch_size.')

  def epoch_indices(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    n = self.steps_per_epoch * self.global_batch
    order = (np.random.default_rng([self.seed, epoch]).permutation(self.num_records)
             if self.shuffle else np.arange(self.num_records))
    local = self.global_batch // self.process_count
    pos = np.arange(n).reshape(self.steps_per_epoch, self.process_count, local)[:, self.process_index]
    pos = pos.reshape(-1)
    return order[pos].astype(np.int64), pos.astype(np.int64)


@register_sampler('repeated')
@dataclasses.dataclass
class RepeatedSampler:
  """Repeated augmentation (MultiGrain, DeiT): each global batch holds ``repeats`` copies of
  ``global_batch / repeats`` images, consecutive, each copy augmented differently (its own
  position); :func:`ghostnets_jax.data.sampler.repeated_augmentation_batches` decides the order
  and sizes the epoch as MultiGrain's ``RASampler`` (``len_factor`` x the split's samples)."""
  num_records: int
  global_batch: int
  seed: int = 0
  process_index: int = 0
  process_count: int = 1
  repeats: int = 3
  shuffle: bool = True
  len_factor: float = 1.0

  def __post_init__(self):
    if self.global_batch % (self.process_count * self.repeats):
      raise ConfigError(f'global batch {self.global_batch} must be a multiple of processes x '
                        f'repeats = {self.process_count} x {self.repeats}; change config.batch_size.')
    self.local = self.global_batch // self.process_count
    self.steps_per_epoch = len(self._batches(0))

  def _batches(self, epoch: int) -> np.ndarray:
    from ghostnets_jax.data.sampler import repeated_augmentation_batches
    return repeated_augmentation_batches(
        self.num_records, self.local, epoch, repeats=self.repeats, seed=self.seed,
        process_index=self.process_index, process_count=self.process_count, shuffle=self.shuffle,
        len_factor=self.len_factor)

  def epoch_indices(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    b = self._batches(epoch)
    pos = (np.arange(len(b))[:, None] * self.global_batch + self.process_index * self.local
           + np.arange(self.local)[None])
    return b.reshape(-1).astype(np.int64), pos.reshape(-1).astype(np.int64)


def _fetch(source: Source, ds: tf.data.Dataset, parallel: int) -> tf.data.Dataset:
  """(index, ...) elements -> (serialized example, ...), reading in chunks."""
  def read(idx):
    out = tf.numpy_function(lambda i: source.fetch(i), [idx], tf.string, stateful=False)
    out.set_shape(idx.shape)
    return out
  return ds.batch(FETCH_CHUNK).map(lambda i, *rest: (read(i), i, *rest),
                                   num_parallel_calls=parallel).unbatch()


def _parse(source: Source, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
  ex = source.features.deserialize_example(serialized, decoders={'image': tfds.decode.SkipDecoding()})
  return {'image': ex['image'], 'label': tf.cast(ex['label'], tf.int32)}


def _options(threads: Optional[int]) -> tf.data.Options:
  opts = tf.data.Options()
  opts.deterministic = True
  if threads:
    opts.threading.private_threadpool_size = threads
  opts.experimental_optimization.map_parallelization = True
  return opts


@dataclasses.dataclass
class Position:
  """Where the training input stands: the next batch is ``batch`` of ``epoch``."""
  epoch: int = 0
  batch: int = 0


class TrainIterator:
  """Infinite iterator of process-local training batches ``{'image', 'label', 'image_id'}``
  (numpy; ``image_id`` = record index, the instance id of repeated augmentation) with
  ``get_state()`` / ``set_state()`` (JSON-able ``{'epoch', 'batch', ...}``)."""

  def __init__(self, source: Source, sampler: Sampler, preprocess: str, local_batch: int, *,
               seed: int = 0, threads: Optional[int] = None, prefetch: int = 2):
    self.source, self.sampler, self.spec = source, sampler, preprocess
    self.local_batch, self.seed, self.threads, self.prefetch = local_batch, seed, threads, prefetch
    self.steps_per_epoch = sampler.steps_per_epoch
    self._fn = compose(preprocess)
    self.position = Position()
    self._it: Optional[Iterator] = None

  def _dataset(self, start: Position) -> tf.data.Dataset:
    sampler = self.sampler

    def epoch(e):
      rec, pos = tf.numpy_function(lambda e: sampler.epoch_indices(int(e)), [e],
                                   (tf.int64, tf.int64), stateful=False)
      rec.set_shape([None])
      pos.set_shape([None])
      return tf.data.Dataset.from_tensor_slices((rec, pos, tf.fill(tf.shape(rec), e)))

    ds = tf.data.Dataset.range(start.epoch, 2 ** 40).flat_map(epoch)
    ds = ds.skip(start.batch * self.local_batch)
    ds = _fetch(self.source, ds, tf.data.AUTOTUNE)
    base = tf.constant([self.seed, 0x5EED], tf.int64)

    def process(serialized, index, pos, e):
      ex = _parse(self.source, serialized)
      seed = tf.random.experimental.stateless_fold_in(
          tf.random.experimental.stateless_fold_in(base, e), pos)
      return {'image': self._fn(ex['image'], seed), 'label': ex['label'],
              'image_id': tf.cast(index, tf.int32)}

    ds = ds.map(process, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(self.local_batch, drop_remainder=True).prefetch(self.prefetch)
    return ds.with_options(_options(self.threads))

  def __iter__(self) -> 'TrainIterator':
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._it is None:
      self._it = self._dataset(self.position).as_numpy_iterator()
    batch = next(self._it)
    b = self.position.batch + 1
    self.position = (Position(self.position.epoch + 1, 0) if b == self.steps_per_epoch
                     else Position(self.position.epoch, b))
    return batch

  def get_state(self) -> dict[str, Any]:
    return {'epoch': self.position.epoch, 'batch': self.position.batch,
            'steps_per_epoch': self.steps_per_epoch, 'local_batch': self.local_batch,
            'seed': self.seed}

  def set_state(self, state: dict[str, Any]) -> None:
    if state.get('steps_per_epoch', self.steps_per_epoch) != self.steps_per_epoch:
      raise ConfigError(f'the checkpointed input position was for {state["steps_per_epoch"]} '
                        f'steps per epoch, this run has {self.steps_per_epoch} (batch size or '
                        'dataset changed); resume with the same config.batch_size and data.')
    if not 0 <= state['batch'] < self.steps_per_epoch:
      raise ValueError(f'bad input position {state}')
    self.position = Position(int(state['epoch']), int(state['batch']))
    self._it = None


def eval_dataset(source: Source, preprocess: str, local_batch: int, *, process_index: int = 0,
                 process_count: int = 1, threads: Optional[int] = None,
                 seed: int = 0) -> tuple[tf.data.Dataset, int]:
  """Process-local eval batches ``{'image', 'label', 'index', 'mask'}`` and their count.

  Process ``p`` reads the contiguous range ``p`` of the split; the last batches are padded with
  copies of record 0 whose ``mask`` is 0. Every process yields the same number of batches.
  Random ops in ``preprocess`` (e.g. the copies of copy detection) draw from ``(seed, index)``.
  """
  n = len(source)
  per_process = math.ceil(n / process_count)
  steps = max(1, math.ceil(per_process / local_batch))
  lo = min(n, process_index * per_process)
  hi = min(n, lo + per_process)
  idx = np.full(steps * local_batch, -1, np.int64)
  idx[:hi - lo] = np.arange(lo, hi)
  fn = compose(preprocess)
  ds = tf.data.Dataset.from_tensor_slices(idx)
  ds = ds.map(lambda i: (tf.maximum(i, 0), i >= 0))
  ds = _fetch(source, ds, tf.data.AUTOTUNE)

  base = tf.constant([seed, 0xE7A1], tf.int64)

  def process(serialized, index, valid):
    ex = _parse(source, serialized)
    return {'image': fn(ex['image'], tf.random.experimental.stateless_fold_in(base, index)),
            'label': ex['label'], 'index': tf.cast(index, tf.int32),
            'mask': tf.cast(valid, tf.float32)}

  ds = ds.map(process, num_parallel_calls=tf.data.AUTOTUNE).batch(local_batch).prefetch(2)
  return ds.with_options(_options(threads)), steps
