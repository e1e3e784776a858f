"""Input pipeline: preprocessing ops, samplers and exact positions, eval padding, the real
imagenet2012 builder on fabricated manual files, tfds.testing.mock_data, the embedded dataset."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from ghostnets_jax.data import datasets as DS, pipeline as PL
from ghostnets_jax.data import preprocess as P
from ghostnets_jax.data.demo_dataset import load_arrays
from tests.train_helpers import embedded_data_dir, fabricate_imagenet

SEED = tf.constant([1, 2], tf.int64)


def _png(img: np.ndarray) -> tf.Tensor:
  return tf.io.encode_png(img)


def test_op_spec_parsing_and_errors():
  assert P.split_spec("a|b(1, 'x|y')|c(k=(1, 2))") == ['a', "b(1, 'x|y')", 'c(k=(1, 2))']
  assert P.parse_op("inception_crop(224, scale=(0.5, 1.0))") == (
      'inception_crop', (224,), {'scale': (0.5, 1.0)})
  with pytest.raises(ValueError, match="unknown preprocessing op 'nope'.*flip_lr"):
    P.get_op('nope(3)')
  with pytest.raises(ValueError, match='arguments must be literals'):
    P.get_op('flip_lr(p=x)')


def test_inception_crop_deterministic_per_seed_and_bounded():
  rng = np.random.RandomState(0)
  img = rng.randint(0, 255, (60, 90, 3), dtype=np.uint8)
  op = P.get_op('inception_crop(32, scale=(0.08, 1.0))')
  for encoded in (_png(img), tf.io.encode_jpeg(img)):   # PNG: decode+crop; JPEG: fused crop
    a, b = op(encoded, SEED).numpy(), op(encoded, SEED).numpy()
    c = op(encoded, tf.constant([1, 3], tf.int64)).numpy()
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
  # scale=(1, 1) and ratio of the image: the whole image, resized (bilinear, antialiased).
  whole = P.get_op('inception_crop(30, scale=(1.0, 1.0), ratio=(1.5, 1.5))')(_png(img), SEED).numpy()
  ref = np.asarray(Image.fromarray(img).resize((30, 30), Image.BILINEAR), np.float32)
  assert np.abs(whole.astype(np.float32) - ref).mean() < 3.0


def test_flip_and_normalize():
  img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
  flips = [P.get_op('flip_lr(1.0)')(tf.constant(img), SEED).numpy(),
           P.get_op('flip_lr(0.0)')(tf.constant(img), SEED).numpy()]
  np.testing.assert_array_equal(flips[0], img[:, ::-1])
  np.testing.assert_array_equal(flips[1], img)
  out = P.get_op('normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))')(tf.constant(img), SEED).numpy()
  np.testing.assert_allclose(out, (img / 255.0 - 0.5) / 0.25, rtol=1e-5, atol=1e-5)


def test_normalize_is_float32_arithmetic():
  """Every uint8 level in every channel: float32 (x - 255 mean) / (255 std), as numpy computes it."""
  mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
  img = np.stack([np.arange(256, dtype=np.uint8).reshape(16, 16)] * 3, -1)
  img[..., 1] = img[::-1, ::-1, 1]
  out = P.get_op(f'normalize({mean}, {std})')(tf.constant(img), SEED).numpy()
  f32 = lambda v: np.asarray(v, np.float32)  # noqa: E731
  ref = (img.astype(np.float32) - f32(mean) * f32(255.)) / (f32(std) * f32(255.))
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize('hw', [(50, 80), (81, 40)])
def test_eval_resize_crop_matches_pil_reference(hw):
  """timm's eval transform: resize the shorter side to size/crop_pct (bicubic), centre crop."""
  rng = np.random.RandomState(1)
  img = (rng.rand(*hw, 3) * 255).astype(np.uint8)
  size, crop_pct = 32, 0.875
  out = P.get_op(f'resize_crop({size}, crop_pct={crop_pct}, interpolation="bicubic")')(
      _png(img), SEED).numpy()
  short = int(size / crop_pct)
  h, w = hw
  nh, nw = (short, int(w * short / h)) if h <= w else (int(h * short / w), short)
  ref = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BICUBIC))
  top, left = (nh - size + 1) // 2, (nw - size + 1) // 2
  ref = ref[top:top + size, left:left + size]
  assert out.shape == (size, size, 3)
  assert np.abs(out.astype(np.float32) - ref).mean() < 4.0   # TF vs PIL bicubic kernels


@pytest.mark.parametrize('processes', [1, 2, 4])
def test_shuffle_sampler_global_batches_do_not_depend_on_process_count(processes):
  n, gb = 103, 8
  ref = PL.ShuffleSampler(n, gb, seed=3)
  rec1, pos1 = ref.epoch_indices(5)
  parts = [PL.ShuffleSampler(n, gb, seed=3, process_index=p, process_count=processes).epoch_indices(5)
           for p in range(processes)]
  assert ref.steps_per_epoch == n // gb
  for step in range(ref.steps_per_epoch):   # global batch `step` = concat of process slices
    lb = gb // processes
    got = np.concatenate([r[step * lb:(step + 1) * lb] for r, _ in parts])
    np.testing.assert_array_equal(got, rec1[step * gb:(step + 1) * gb])
  assert len(set(rec1.tolist())) == len(rec1) == ref.steps_per_epoch * gb
  assert not np.array_equal(rec1, ref.epoch_indices(6)[0])   # a new permutation each epoch
  with pytest.raises(ValueError, match='fewer than one global batch'):
    PL.ShuffleSampler(5, 8)


def test_train_iterator_resumes_exactly_and_crosses_epochs():
  data_dir = embedded_data_dir()
  src = DS.open_source('fashion_mnist_embedded', 'train[:40]', data_dir)
  spec = P.train_spec(16, scale=(0.3, 1.0), ratio=(0.75, 1.33), interpolation='bilinear',
                      hflip=0.5, ops='', post_ops='', mean=(0.5,) * 3, std=(0.5,) * 3)
  sampler = PL.make_sampler('shuffle', len(src), 16, seed=0, process_index=0, process_count=1)
  it = PL.TrainIterator(src, sampler, spec, 16, threads=2)
  batches = [next(it) for _ in range(5)]     # 2 steps/epoch: crosses two epoch boundaries
  assert it.get_state()['epoch'] == 2 and it.get_state()['batch'] == 1
  it2 = PL.TrainIterator(src, sampler, spec, 16, threads=2)
  it2.set_state({'epoch': 1, 'batch': 1, 'steps_per_epoch': 2})
  for want in batches[3:]:
    got = next(it2)
    np.testing.assert_array_equal(got['image'], want['image'])
    np.testing.assert_array_equal(got['label'], want['label'])
  assert batches[0]['image'].shape == (16, 16, 16, 3) and batches[0]['image'].dtype == np.float32
  with pytest.raises(ValueError, match='batch size or dataset changed'):
    it2.set_state({'epoch': 0, 'batch': 0, 'steps_per_epoch': 7})


@pytest.mark.parametrize('processes', [1, 3])
def test_eval_pads_and_masks_never_drops(processes):
  src = DS.open_source('fashion_mnist_embedded', 'test[:103]', embedded_data_dir())
  spec = P.eval_spec(8, crop_pct=1.0, interpolation='bilinear', mean=(0.5,) * 3, std=(0.5,) * 3)
  seen, counts = [], set()
  for p in range(processes):
    ds, steps = PL.eval_dataset(src, spec, 10, process_index=p, process_count=processes)
    batches = list(ds.as_numpy_iterator())
    counts.add(len(batches))
    assert len(batches) == steps and all(b['image'].shape[0] == 10 for b in batches)
    for b in batches:
      seen += [tuple(x) for x in b['image'][b['mask'] > 0].reshape(-1, 8 * 8 * 3)[:, :6]]
  assert len(counts) == 1                 # every process runs the same number of eval steps
  assert len(seen) == 103                 # every example once, padding masked out


def test_imagenet2012_real_builder_on_fabricated_manual_files(tmp_path):
  manual, data_dir = tmp_path / 'manual', tmp_path / 'tfds'
  with pytest.raises(DS.DatasetNotFoundError) as e:
    DS.prepare('imagenet2012', str(data_dir), str(manual))
  msg = str(e.value)
  assert 'ILSVRC2012_img_train.tar' in msg and 'ILSVRC2012_img_val.tar' in msg and str(manual) in msg
  fabricate_imagenet(str(manual))
  builder = DS.prepare('imagenet2012', str(data_dir), str(manual))
  train = DS.open_source('imagenet2012', 'train', builder=builder)
  val = DS.open_source('imagenet2012', 'validation', builder=builder)
  assert (len(train), len(val), train.num_classes) == (12, 6, 1000)
  labels = tfds.builder('imagenet2012', data_dir=str(data_dir)).info.features['label']
  it = PL.TrainIterator(train, PL.ShuffleSampler(12, 4), P.train_spec(
      24, scale=(0.08, 1.0), ratio=(0.75, 1.33), interpolation='bicubic', hflip=0.5, ops='',
      post_ops='', mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)), 4)
  got = {int(x) for _ in range(3) for x in next(it)['label']}
  assert got == {labels.str2int(s) for s in ('n01440764', 'n01443537', 'n01484850')}
  ds, _ = PL.eval_dataset(val, P.eval_spec(24, crop_pct=0.875, interpolation='bicubic',
                                          mean=(0.5,) * 3, std=(0.5,) * 3), 4)
  val_labels = np.concatenate([b['label'][b['mask'] > 0] for b in ds.as_numpy_iterator()])
  bundled = tfds.core.tfds_path('datasets/imagenet2012/validation_labels.txt').read_text().split()
  # validation labels come from the bundled file, by sorted file name
  assert sorted(val_labels.tolist()) == sorted(labels.str2int(s) for s in bundled[:6])


def test_pipeline_reads_tfds_mock_data():
  with tfds.testing.mock_data(num_examples=12):
    src = DS.open_source('fashion_mnist_embedded', 'train', data_dir='/nonexistent')
    it = PL.TrainIterator(src, PL.ShuffleSampler(len(src), 4), P.train_spec(
        16, scale=(0.5, 1.0), ratio=(0.75, 1.33), interpolation='bilinear', hflip=0.5, ops='',
        post_ops='', mean=(0.5,) * 3, std=(0.5,) * 3), 4)
    b = next(it)
  assert b['image'].shape == (4, 16, 16, 3) and b['label'].shape == (4,)
  assert np.all((b['label'] >= 0) & (b['label'] < 10))


def test_embedded_dataset_is_real_fashion_mnist():
  builder = DS.prepare('fashion_mnist_embedded', embedded_data_dir())
  assert builder.info.splits['train'].num_examples == 10000
  assert builder.info.splits['test'].num_examples == 2000
  feats = builder.info.features
  assert set(feats) == {'image', 'label', 'file_name'} and feats['label'].num_classes == 10
  ex = builder.as_data_source('test')[0]
  assert ex['image'].shape == (28, 28, 3) and ex['image'].dtype == np.uint8
  arrays = load_arrays()   # the committed subset: 1,000 / 200 images per class
  np.testing.assert_array_equal(np.bincount(arrays['train_labels']), [1000] * 10)
  np.testing.assert_array_equal(np.bincount(arrays['test_labels']), [200] * 10)
  i = int(ex['file_name'].decode()[-9:-4])   # fashion_mnist_test_<source index>.png: lossless
  k = int(np.flatnonzero(arrays['test_index'] == i)[0])
  for ch in range(3):
    np.testing.assert_array_equal(ex['image'][..., ch], arrays['test_images'][k])
  assert ex['label'] == arrays['test_labels'][k]


def test_empty_data_dir_means_tfds_default_not_the_current_directory(tmp_path, monkeypatch):
  """``--config.data.data_dir=`` (empty) must not prepare a dataset into the working directory."""
  prepared = embedded_data_dir()
  # TFDS's default data dir ($TFDS_DATA_DIR or ~/tensorflow_datasets, read at import)
  monkeypatch.setattr(tfds.core.constants, 'DATA_DIR', prepared)
  monkeypatch.chdir(tmp_path)
  builder = DS.prepare('fashion_mnist_embedded', '')
  assert str(builder.data_dir).startswith(prepared) and builder.info.splits['test'].num_examples == 2000
  assert list(tmp_path.iterdir()) == []


def test_fetch_reads_the_records_without_a_thread_pool(monkeypatch):
  """``Source.fetch`` runs inside tf.data's map threads; array_record's ``__getitems__`` starts a
  ThreadPoolExecutor per call, and a test run deadlocked on concurrent.futures' global lock there
  (a pipeline's iterator, destroyed by the garbage collector inside another thread's start-up,
  waited for such a fetch). The records must equal TFDS's own ``__getitems__``."""
  import concurrent.futures
  source = DS.open_source('fashion_mnist_embedded', 'test', embedded_data_dir())
  keys = [5, 0, 17, 5, 3]
  want = source.records.__getitems__(keys)

  def no_pool(*args, **kwargs):
    raise AssertionError('fetch started a ThreadPoolExecutor')
  monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, '__init__', no_pool)
  got = source.fetch(np.asarray(keys))
  assert list(got) == list(want) and len(set(got)) == 4
