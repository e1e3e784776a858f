"""Repeated-augmentation sampler: two simulated processes, coverage, repeats, determinism."""
import collections

import numpy as np
import pytest

from ghostnets_jax.data.sampler import RepeatedAugmentationSampler, repeated_augmentation_batches


def epoch_of(num_images, batch_size, epoch=0, processes=2, **kw):
  return [repeated_augmentation_batches(num_images, batch_size, epoch, process_index=k,
                                        process_count=processes, **kw) for k in range(processes)]


def test_two_processes_share_an_epoch_disjointly_with_every_image_three_times():
  shares = epoch_of(60, 6)
  assert all(s.shape == (15, 6) for s in shares)  # 60 images / (2 processes x 6 // 3) per step
  counts = collections.Counter(np.concatenate([s.ravel() for s in shares]).tolist())
  assert set(counts) == set(range(60)) and set(counts.values()) == {3}
  assert not set(shares[0].ravel()) & set(shares[1].ravel())  # each image lives on one process
  for s in shares:
    for b in s:  # every batch: consecutive triples of one image, all distinct images
      triples = b.reshape(-1, 3)
      assert (triples == triples[:, :1]).all() and len(set(triples[:, 0])) == len(triples)


def test_epochs_reshuffle_and_processes_agree():
  a, b = epoch_of(60, 6, epoch=0), epoch_of(60, 6, epoch=1)
  assert not np.array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], epoch_of(60, 6, epoch=0)[1])  # a pure function of (seed, epoch)
  assert not np.array_equal(a[0], epoch_of(60, 6, seed=1)[0])
  ordered = epoch_of(12, 3, processes=2, shuffle=False)
  np.testing.assert_array_equal(ordered[0][:2], [[0, 0, 0], [2, 2, 2]])
  np.testing.assert_array_equal(ordered[1][:2], [[1, 1, 1], [3, 3, 3]])


def test_last_step_drop_or_pad():
  dropped = epoch_of(62, 6)
  counts = collections.Counter(np.concatenate([s.ravel() for s in dropped]).tolist())
  assert len(counts) == 60 and set(counts.values()) == {3}
  padded = epoch_of(62, 6, drop_last=False)
  assert all(s.shape == (16, 6) for s in padded)
  counts = collections.Counter(np.concatenate([s.ravel() for s in padded]).tolist())
  assert set(counts) == set(range(62)) and sorted(collections.Counter(counts.values()).items()) == [(3, 60), (6, 2)]


def test_sampler_object_and_errors():
  s = RepeatedAugmentationSampler(60, 6, process_index=1, process_count=2)
  batches = list(s.epoch(2))
  assert len(s) == len(batches) == 15
  np.testing.assert_array_equal(np.stack(batches), epoch_of(60, 6, epoch=2)[1])
  with pytest.raises(ValueError, match='multiple of repeats=3'):
    repeated_augmentation_batches(60, 8)
  with pytest.raises(ValueError, match='process_index=2'):
    repeated_augmentation_batches(60, 6, process_index=2, process_count=2)
  with pytest.raises(ValueError, match='do not fill one global step'):
    repeated_augmentation_batches(3, 6, process_count=2)
