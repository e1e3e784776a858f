"""Random-access TFDS record sources (array_record), prepared on first use, with clear errors."""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import shutil
import tempfile
import unittest.mock
from typing import Any, Callable, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds

from ghostnets_jax import storage
from ghostnets_jax.errors import ConfigError, PathNotFoundError, UserError

IMAGENET_MANUAL_FILES = {
    'ILSVRC2012_img_train.tar': 'training images: 1,000 tars named <synset>.tar (n01440764.tar, '
                                '...) of JPEGs, ~138 GB',
    'ILSVRC2012_img_val.tar': 'validation images: 50,000 JPEGs ILSVRC2012_val_00000001.JPEG ... '
                              '(labels come with TFDS), ~6.3 GB',
}


class DatasetNotFoundError(UserError, FileNotFoundError):
  """A dataset that is neither prepared nor preparable from what is on disk."""


@dataclasses.dataclass
class Source:
  """One split: ``fetch(indices)`` returns the serialized TFDS examples at ``indices``.

  ``features.deserialize_example`` parses them inside tf.data; ``records`` is TFDS's
  ``ArrayRecordDataSource`` over the split (``__getitems__`` of raw bytes).
  """
  name: str
  split: str
  records: Any
  features: tfds.features.FeaturesDict
  num_records: int

  @property
  def num_classes(self) -> int:
    return int(self.features['label'].num_classes)

  def __len__(self) -> int:
    return self.num_records

  def fetch(self, indices: Sequence[int]) -> np.ndarray:
    keys = [int(i) for i in indices]
    if isinstance(self.records, unittest.mock.Mock):   # tfds.testing.mock_data: decoded examples
      items = [self.features.serialize_example(self.records[k]) for k in keys]
    else:
      # One record at a time, not ``__getitems__``: that starts a ThreadPoolExecutor per call, and
      # this runs inside tf.data's map threads. A test run deadlocked on it: the garbage collector
      # destroyed a finished pipeline's iterator inside a new thread's start-up (the destructor
      # waits for its in-flight fetches), while such a fetch waited for concurrent.futures'
      # global lock, which the thread starting that new thread held. tf.data runs the fetches in
      # parallel anyway.
      items = [self.records[k] for k in keys]
    return np.array(items, dtype=object)


def _register_builtin_builders() -> None:
  import ghostnets_jax.data.demo_dataset  # noqa: F401  (registers fashion_mnist_embedded)


def _check_manual_files(name: str, builder: tfds.core.DatasetBuilder, manual_dir: Optional[str]) -> None:
  if name.split(':')[0] != 'imagenet2012':
    return
  manual_dir = manual_dir or os.path.join(builder._data_dir_root, 'downloads', 'manual')  # pylint: disable=protected-access
  missing = [f for f in IMAGENET_MANUAL_FILES if not (storage.path(manual_dir) / f).exists()]
  if missing:
    lines = [f'imagenet2012 is not prepared in {builder.data_dir!s} and cannot be built: '
             f'{", ".join(missing)} not found in the manual_dir {manual_dir}.',
             'Download from https://image-net.org/download-images (registration needed) and put:']
    lines += [f'  {manual_dir}/{f}  ({what})' for f, what in IMAGENET_MANUAL_FILES.items()]
    lines.append('then rerun (set --config.data.manual_dir / --config.data.data_dir); the first run '
                 'converts them to array_record in data_dir. Or point --config.data.data_dir at an '
                 'already prepared copy.')
    raise DatasetNotFoundError('\n'.join(lines))


@contextlib.contextmanager
def _scratch_tempdir():
  """Python's temporary files go to a directory removed afterwards: TFDS leaves an empty
  ``mkdtemp()`` behind whenever it builds the info of a dataset that is not prepared yet."""
  scratch, previous = tempfile.mkdtemp(prefix='ghostnets_jax-tfds-'), tempfile.tempdir
  tempfile.tempdir = scratch
  try:
    yield
  finally:
    tempfile.tempdir = previous
    shutil.rmtree(scratch, ignore_errors=True)


def prepare(name: str, data_dir: Optional[str] = None, manual_dir: Optional[str] = None
            ) -> tfds.core.DatasetBuilder:
  """The TFDS builder of ``name``, prepared in array_record format if it is not yet (writing
  only to ``data_dir``)."""
  with _scratch_tempdir():
    return _prepare(name, data_dir, manual_dir)


def _prepare(name: str, data_dir: Optional[str], manual_dir: Optional[str]
             ) -> tfds.core.DatasetBuilder:
  _register_builtin_builders()
  try:
    # an empty data_dir (``--config.data.data_dir=``) means TFDS's default, not the current directory
    builder = tfds.builder(name, data_dir=data_dir or None, file_format='array_record')
  except tfds.core.registered.DatasetNotFoundError as e:
    # TFDS's own builders only: the community index is fetched from a bucket (network, minutes
    # of retries offline) just to suggest a name.
    builders = tfds.list_builders(with_community_datasets=False)
    close = difflib.get_close_matches(name.split(':')[0], builders, n=5, cutoff=0.6)
    raise DatasetNotFoundError(
        f'unknown TFDS dataset {name!r}{"; did you mean " + ", ".join(close) if close else ""}? '
        'Set --config.data.dataset to a name of tfds.list_builders() (or use an image folder: '
        '--config.data.source=folder).') from e
  if not builder.is_prepared():
    _check_manual_files(name, builder, manual_dir)
    try:
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
          file_format='array_record')
    except Exception as e:   # network, checksum, disk: TFDS raises many types
      reason = ' '.join(f'{type(e).__name__}: {e}'.split())[:400]
      raise DatasetNotFoundError(
          f'{name} is not prepared in {builder.data_dir} and preparing it failed ({reason}). '
          f'Prepare it once on a machine with internet access: tfds build {name.split(":")[0]} '
          f'--data_dir=DIR --file_format=array_record, copy DIR here and pass '
          f'--config.data.data_dir=DIR (TFDS reads DIR/{builder.info.full_name}/); or point '
          '--config.data.data_dir at an already prepared copy.') from e
  fmt = getattr(builder.info.file_format, 'value', builder.info.file_format)
  if fmt is not None and str(fmt) != 'array_record':
    raise DatasetNotFoundError(
        f'{name} in {builder.data_dir} is stored as {fmt}; the input pipeline needs random access '
        f'(array_record). Convert it once with: tfds convert_format --dataset_dir='
        f'{builder.data_dir} --out_file_format=array_record, or prepare it in a new data_dir.')
  return builder


def open_source(name: str, split: str, data_dir: Optional[str] = None,
                manual_dir: Optional[str] = None,
                builder: Optional[tfds.core.DatasetBuilder] = None) -> Source:
  """A :class:`Source` over ``split`` of TFDS dataset ``name`` (TFDS split syntax allowed)."""
  builder = builder or prepare(name, data_dir, manual_dir)
  _check_features(name, builder.info.features)
  try:
    ds = builder.as_data_source(split)
  except (KeyError, ValueError) as e:   # an unknown split, or a slice that selects nothing
    if _split_size(builder, split) != 0:
      raise ConfigError(f'{name} has no split {split!r}; available: {_splits(builder)}. Set '
                       '--config.data.train_split / --config.data.eval_split to one of them.') from e
    ds = None
  n = len(ds) if ds is not None else 0
  if n == 0:
    raise ConfigError(f'{name} split {split!r} is empty (0 examples in {builder.data_dir}): '
                     f'nothing to train or evaluate on. Available splits: {_splits(builder)}; set '
                     '--config.data.train_split / --config.data.eval_split to a non-empty one '
                     "(slices such as 'train[:90%]' work).")
  return Source(name, split, ds.data_source, builder.info.features, n)


def _splits(builder: tfds.core.DatasetBuilder) -> str:
  return ', '.join(f'{k} ({v.num_examples})' for k, v in builder.info.splits.items())


def _split_size(builder: tfds.core.DatasetBuilder, split: str) -> Optional[int]:
  """Examples ``split`` selects (0 for an empty slice), or None when it names no split."""
  try:
    return int(builder.info.splits[split].num_examples)
  except (KeyError, ValueError, AssertionError):
    return None


def _check_features(name: str, features: tfds.features.FeaturesDict) -> None:
  """The pipeline decodes ``image`` as an encoded 8-bit image (or a uint8 HWC tensor)."""
  if 'image' not in features or 'label' not in features:
    raise ConfigError(f'{name} needs "image" and "label" features; it has {list(features)}. Use an '
                     'image classification dataset, or an image folder (--config.data.source=folder).')
  f = features['image']
  shape, dtype = tuple(f.shape), getattr(f.dtype, 'name', str(f.dtype))
  channels = (None, 1, 3, 4) if isinstance(f, tfds.features.Image) else (3,)   # decoded to RGB
  if dtype != 'uint8' or len(shape) != 3 or shape[-1] not in channels:
    raise ConfigError(
        f'{name}: the "image" feature is {type(f).__name__} of dtype {dtype} and shape {shape}; '
        'the input pipeline reads 8-bit images: tfds.features.Image of shape (height, width, 1, 3 '
        'or 4 channels), or a uint8 Tensor of shape (height, width, 3). Store the images as '
        'tfds.features.Image(shape=(None, None, 3)) in the dataset builder (convert floats with '
        'np.uint8(np.clip(x * 255, 0, 255))), or use an image folder (--config.data.source=folder).')


def prepare_on_all_processes(prepare_fn: Callable[[], Any]) -> Any:
  """Runs ``prepare_fn`` on process 0 first, then on the others (no-op there when data_dir is
  shared), so concurrent hosts never write the same TFDS directory."""
  import jax
  from jax.experimental import multihost_utils
  if jax.process_count() == 1:
    return prepare_fn()
  out = prepare_fn() if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices('ghostnets_jax:prepare_data')
  if jax.process_index() != 0:
    out = prepare_fn()
  return out


SOURCES = ('tfds', 'folder')


def _open_folder(field: str, root: str, split: str, d: Any):
  from ghostnets_jax.data.image_folder import open_image_folder
  if not root:
    raise ConfigError(f'data.source=folder needs --config.data.{field}=<folder with one sub-folder '
                     'per class>.')
  if not storage.path(root).is_dir():
    raise PathNotFoundError(f'config.data.{field}: image folder not found: {root}')
  return open_image_folder(root, split, on_corrupt=d.on_corrupt,
                           allow_empty_classes=d.allow_empty_classes)


def open_splits(d: Any, *, train: bool = True, evaluate: bool = True) -> tuple[Any, Any]:
  """``(train source, eval source)`` of ``config.data`` (None where not wanted or not set).

  ``d.source``: 'tfds' (``d.dataset`` prepared in ``d.data_dir``; splits ``train_split`` /
  ``eval_split``) or 'folder' (ImageFolder layout: ``d.train_dir`` / ``d.eval_dir``; the eval
  folder must have the train folder's classes).
  """
  source = d.get('source', 'tfds')
  if source == 'folder':
    train_src = _open_folder('train_dir', d.train_dir, 'train', d) if train else None
    eval_src = (_open_folder('eval_dir', d.eval_dir, 'validation', d)
                if evaluate and d.eval_dir else None)
    if train_src is not None and eval_src is not None and (
        train_src.class_names != eval_src.class_names):
      only_t = sorted(set(train_src.class_names) - set(eval_src.class_names))
      only_e = sorted(set(eval_src.class_names) - set(train_src.class_names))
      raise ConfigError(f'the class folders of data.train_dir ({d.train_dir}) and data.eval_dir '
                       f'({d.eval_dir}) differ (labels are sorted folder names): only in train '
                       f'{only_t}, only in eval {only_e}. Give both the same class folders '
                       '(an empty one plus data.allow_empty_classes=True is fine).')
    return train_src, eval_src
  if source != 'tfds':
    raise ConfigError(f'config.data.source must be one of {SOURCES}, got {source!r}.')
  if not d.dataset:
    raise ConfigError('config.data.dataset is empty: name a TFDS dataset (--config.data.dataset='
                     'oxford_flowers102) or use a folder (--config.data.source=folder '
                     '--config.data.train_dir=... --config.data.eval_dir=...).')
  builder = prepare_on_all_processes(lambda: prepare(d.dataset, d.data_dir, d.manual_dir))
  eval_src = (open_source(d.dataset, d.eval_split, builder=builder)
              if evaluate and d.eval_split else None)
  train_src = open_source(d.dataset, d.train_split, builder=builder) if train else None
  return train_src, eval_src
