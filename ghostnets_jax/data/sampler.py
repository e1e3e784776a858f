"""Repeated-augmentation (RA) batch sampling, as index arithmetic (no data, no framework).

MultiGrain (and DeiT) put ``m`` differently augmented copies of each image in the same batch (m = 3
in the paper), so the margin loss has positive pairs. An epoch is sized as the official MultiGrain
``RASampler`` (facebookresearch/multigrain, ``multigrain/lib/samplers.py``): ``int(len_factor * N)``
samples (``len_factor`` 1 by default), i.e. ``len_factor * N / m`` distinct images each repeated
``m`` times, so an epoch has as many steps as a plain one and not every image appears in it
(``len_factor = m`` shows every image ``m`` times). Seeded permutations of the images (a fresh one
when an epoch needs more images than one holds) are cut into global steps of ``global_batch / m``
images, each repeated ``m`` times. Process ``k`` of ``n`` takes the ``k``-th contiguous share of
every global step, so processes get disjoint images and each image's copies stay together on one
process (and in one global batch), whichever of the two the loss is computed over. Every process
computes the same permutation from ``(seed, epoch)``.
"""
from __future__ import annotations

import numpy as np


def repeated_augmentation_batches(num_images: int, batch_size: int, epoch: int = 0, *, repeats: int = 3,
                                  process_index: int = 0, process_count: int = 1, seed: int = 0,
                                  shuffle: bool = True, drop_last: bool = True,
                                  len_factor: float = 1.0) -> np.ndarray:
  """This process's batches of one epoch: an int array ``(steps, batch_size)`` of image indices.

  Args:
    num_images: dataset size.
    batch_size: per-process batch; a multiple of ``repeats``.
    epoch: selects the permutation (with ``seed``).
    repeats: copies of each image in a batch (``m``).
    process_index, process_count: this process and how many share the global batch.
    drop_last: drop the samples that do not fill a last global step; otherwise that step is
      completed with more images (of the next permutation).
    len_factor: the epoch is ``int(len_factor * num_images)`` samples (``RASampler``'s meaning).
  """
  if batch_size <= 0 or batch_size % repeats:
    raise ValueError(f'batch_size={batch_size} must be a positive multiple of repeats={repeats} '
                     f'(each image is repeated {repeats} times within a batch).')
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} must be in [0, process_count={process_count}).')
  if len_factor <= 0:
    raise ValueError(f'len_factor={len_factor} must be positive (the epoch is len_factor x '
                     f'{num_images} samples).')
  per_process = batch_size // repeats          # distinct images per process per step
  per_step = per_process * process_count       # distinct images per global step
  samples = int(num_images * len_factor)       # RASampler.len_images
  global_batch = batch_size * process_count
  steps = samples // global_batch if drop_last else -(-samples // global_batch)
  if steps == 0:
    raise ValueError(f'an epoch of {samples} samples ({len_factor} x {num_images} images) does not '
                     f'fill one global step of {global_batch} ({process_count} processes x '
                     f'{batch_size}); use a smaller batch, a larger len_factor or drop_last=False.')
  rng = np.random.default_rng([seed, epoch])
  perms = -(-steps * per_step // num_images)
  order = np.concatenate([rng.permutation(num_images) if shuffle else np.arange(num_images)
                          for _ in range(perms)])[:steps * per_step]
  share = order.reshape(steps, process_count, per_process)[:, process_index]
  return np.repeat(share, repeats, axis=1)

