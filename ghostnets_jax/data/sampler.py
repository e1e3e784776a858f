"""Repeated-augmentation (RA) batch sampling, as index arithmetic (no data, no framework).

MultiGrain (and DeiT) put ``m`` differently augmented copies of each image in the same batch
(m = 3 in the paper), so the margin loss has positive pairs. Here an epoch shows every image
``m`` times: a seeded permutation of the images is cut into global steps of
``global_batch / m`` images, each repeated ``m`` times. Process ``k`` of ``n`` takes the ``k``-th
contiguous share of every global step, so processes get disjoint images and each image's copies
stay together on one process (and in one global batch), whichever of the two the loss is
computed over. Every process computes the same permutation from ``(seed, epoch)``.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np


def repeated_augmentation_batches(num_images: int, batch_size: int, epoch: int = 0, *, repeats: int = 3,
                                  process_index: int = 0, process_count: int = 1, seed: int = 0,
                                  shuffle: bool = True, drop_last: bool = True) -> np.ndarray:
  """This process's batches of one epoch: an int array ``(steps, batch_size)`` of image indices.

  Args:
    num_images: dataset size.
    batch_size: per-process batch; a multiple of ``repeats``.
    epoch: selects the permutation (with ``seed``).
    repeats: copies of each image in a batch (``m``).
    process_index, process_count: this process and how many share the global batch.
    drop_last: drop the images that do not fill a last global step; otherwise that step is
      completed with images from the start of the permutation (shown twice this epoch).
  """
  if batch_size <= 0 or batch_size % repeats:
    raise ValueError(f'batch_size={batch_size} must be a positive multiple of repeats={repeats} '
                     f'(each image is repeated {repeats} times within a batch).')
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} must be in [0, process_count={process_count}).')
  per_process = batch_size // repeats          # distinct images per process per step
  per_step = per_process * process_count       # distinct images per global step
  order = (np.random.default_rng([seed, epoch]).permutation(num_images) if shuffle
           else np.arange(num_images))
  steps = num_images // per_step if drop_last else -(-num_images // per_step)
  if steps == 0:
    raise ValueError(f'{num_images} images do not fill one global step of {per_step} distinct images '
                     f'({process_count} processes x {batch_size} // {repeats}); use a smaller batch '
                     'or drop_last=False.')
  order = np.resize(order, steps * per_step)   # wraps around when the last step is padded
  share = order.reshape(steps, process_count, per_process)[:, process_index]
  return np.repeat(share, repeats, axis=1)


@dataclasses.dataclass(frozen=True)
class RepeatedAugmentationSampler:
  """Iterable form of :func:`repeated_augmentation_batches` for one process.

  ``sampler.epoch(e)`` iterates that epoch's batches (index arrays of length ``batch_size``);
  ``len(sampler)`` is the number of steps per epoch.
  """
  num_images: int
  batch_size: int
  repeats: int = 3
  process_index: int = 0
  process_count: int = 1
  seed: int = 0
  shuffle: bool = True
  drop_last: bool = True

  def batches(self, epoch: int) -> np.ndarray:
    return repeated_augmentation_batches(
        self.num_images, self.batch_size, epoch, repeats=self.repeats,
        process_index=self.process_index, process_count=self.process_count, seed=self.seed,
        shuffle=self.shuffle, drop_last=self.drop_last)

  def epoch(self, epoch: int) -> Iterator[np.ndarray]:
    yield from self.batches(epoch)

  def __len__(self) -> int:
    return len(self.batches(0))
