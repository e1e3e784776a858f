"""Repeated-augmentation sampler: two simulated processes, coverage, repeats, determinism, and
the epoch size of the official MultiGrain ``RASampler`` (facebookresearch/multigrain,
``multigrain/lib/samplers.py``: ``len_images = int(dataset_len * len_factor)`` samples, each
image repeated ``repetitions`` times; ``len(sampler) = len_images // batch_size`` with
drop_last)."""
import collections

import numpy as np
import pytest

from ghostnets_jax.data.sampler import repeated_augmentation_batches


def epoch_of(num_images, batch_size, epoch=0, processes=2, len_factor=3.0, **kw):
  """len_factor 3 = 3 x N samples: every image's three copies in one epoch."""
  return [repeated_augmentation_batches(num_images, batch_size, epoch, process_index=k,
                                        process_count=processes, len_factor=len_factor, **kw)
          for k in range(processes)]


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


def test_one_process_share_and_errors():
  batches = repeated_augmentation_batches(60, 6, 2, process_index=1, process_count=2, len_factor=3.0)
  assert len(batches) == ra_sampler_len(60, 2 * 6, len_factor=3.0) == 15
  np.testing.assert_array_equal(batches, epoch_of(60, 6, epoch=2)[1])
  with pytest.raises(ValueError, match='multiple of repeats=3'):
    repeated_augmentation_batches(60, 8)
  with pytest.raises(ValueError, match='process_index=2'):
    repeated_augmentation_batches(60, 6, process_index=2, process_count=2)
  with pytest.raises(ValueError, match=r'epoch of 3 samples \(1.0 x 3 images\) does not fill'):
    repeated_augmentation_batches(3, 6, process_count=2)
  with pytest.raises(ValueError, match='len_factor=0 must be positive'):
    repeated_augmentation_batches(60, 6, len_factor=0)


def ra_sampler_len(dataset_len, batch_size, len_factor=1.0, drop_last=True):
  """``len(RASampler(...))`` written out from the official code."""
  len_images = int(dataset_len * len_factor)
  return len_images // batch_size if drop_last else (len_images + batch_size - 1) // batch_size


@pytest.mark.parametrize('n,batch,processes,len_factor', [(60, 6, 2, 1.0), (61, 6, 1, 1.0),
                                                          (100, 12, 2, 2.5), (20, 6, 1, 4.0)])
def test_epoch_size_is_rasamplers(n, batch, processes, len_factor):
  shares = epoch_of(n, batch, processes=processes, len_factor=len_factor)
  steps = ra_sampler_len(n, batch * processes, len_factor)
  assert all(s.shape == (steps, batch) for s in shares)
  ids = np.concatenate([s.reshape(s.shape[0], -1, 3) for s in shares], axis=1)
  assert (ids == ids[..., :1]).all()             # m = 3 consecutive copies
  distinct = ids[..., 0].ravel()
  # within one permutation no image repeats; beyond N (len_factor > m) the next one starts
  assert len(set(distinct[:n].tolist())) == min(n, len(distinct))
  if len(distinct) > n:
    assert set(distinct[n:2 * n].tolist()) <= set(range(n))


def test_multigrain_epoch_is_the_published_step_count():
  """ImageNet-1k train (1,281,167 images) at batch 240 (30 x 8): 5,338 steps per epoch, the
  MindSpore MultiGrain README's figure, as RASampler(len_factor=1) gives, and the config's."""
  from configs import multigrain
  from ghostnets_jax.data.pipeline import make_sampler
  c = multigrain.get_config()
  sampler = make_sampler(c.data.sampler, 1_281_167, c.batch_size, seed=0, process_index=0,
                         process_count=1, **c.data.sampler_kwargs.to_dict())
  assert sampler.steps_per_epoch == ra_sampler_len(1_281_167, 240) == 5_338
  # the trainer's epoch (schedule, EMA, eval) is the sampler's, at any len_factor
  import jax
  from ghostnets_jax.train import run_config
  mesh = jax.sharding.Mesh(jax.devices()[:1], ('data',))
  for factor in (1.0, 2.0):
    c.data.sampler_kwargs.len_factor = factor
    sampler = make_sampler(c.data.sampler, 24_000, c.batch_size, seed=0, process_index=0,
                           process_count=1, **c.data.sampler_kwargs.to_dict())
    resolved = run_config.resolve(c, num_classes=1000, num_train=24_000, mesh=mesh)
    assert resolved.steps_per_epoch == sampler.steps_per_epoch == int(24_000 * factor) // 240
