"""A folder of images in ImageFolder layout as a dataset source (what most users have).

::

  root/
    cat/  001.jpg  002.png ...
    dog/  a.jpeg  more/b.jpg ...      (sub-folders of a class folder count too)

Classes are the sub-folder names, sorted: label ``i`` is the ``i``-th name (torchvision's
``ImageFolder`` order). :func:`open_image_folder` scans once and decodes every image (PIL): a
corrupt, truncated or TensorFlow-undecodable file raises :class:`CorruptImageError` naming it,
or with ``on_corrupt='skip'`` is left out with a warning naming it. A class folder without
images raises, or with ``allow_empty_classes=True`` stays a class (its label is kept, so the
labels match the full class list) with a warning.

The source has the interface of the TFDS sources of the training pipeline: ``fetch(indices)``
gives serialized examples that ``features.deserialize_example`` parses inside tf.data into
``{'image': uint8 (H, W, 3), 'label': int64}``, plus ``num_classes`` and ``len``;
``as_dataset()`` is a plain ``tf.data.Dataset`` with the same schema.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Optional, Sequence

import numpy as np

from ghostnets_jax import storage
from ghostnets_jax.errors import UserError

EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')
TF_FORMATS = ('JPEG', 'PNG', 'BMP', 'GIF')  # what tf.io.decode_image reads
ON_CORRUPT = ('error', 'skip')


class CorruptImageError(UserError, ValueError):
  """An image file of the folder that cannot be decoded."""


def _features(class_names: Sequence[str]):
  import tensorflow_datasets as tfds
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3)),
      'label': tfds.features.ClassLabel(names=list(class_names)),
  })


@dataclasses.dataclass
class ImageFolderSource:
  """The images of one folder: ``paths[i]`` has label ``labels[i]`` (index into ``class_names``)."""
  name: str
  split: str
  paths: list[str]
  labels: np.ndarray
  class_names: list[str]

  def __post_init__(self) -> None:
    self.features = _features(self.class_names)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def num_records(self) -> int:
    return len(self.paths)

  def __len__(self) -> int:
    return len(self.paths)

  def fetch(self, indices: Sequence[int]) -> np.ndarray:
    """Serialized TFDS examples of ``indices`` (the file bytes are not re-encoded)."""
    return np.array([self.features.serialize_example(
        {'image': self.paths[int(i)], 'label': int(self.labels[int(i)])}) for i in indices],
        dtype=object)

  def as_dataset(self):
    """``tf.data.Dataset`` of ``{'image': uint8 (H, W, 3), 'label': int64}`` in file order."""
    import tensorflow as tf

    def load(path, label):
      image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
      return {'image': image, 'label': label}

    ds = tf.data.Dataset.from_tensor_slices((self.paths, self.labels.astype(np.int64)))
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def _problem(path: str) -> Optional[str]:
  """Why ``path`` cannot serve as an image, or None (decodes it fully: finds truncation too)."""
  from PIL import Image
  try:
    with storage.path(path).open('rb') as f, Image.open(f) as im:
      fmt = im.format
      im.load()
  except Exception as e:  # PIL raises many types for bad files
    return f'cannot be decoded ({type(e).__name__}: {e})'
  if fmt not in TF_FORMATS:
    return f'is {fmt}, which TensorFlow cannot decode (convert it to JPEG or PNG)'
  return None


def _class_files(folder, extensions: Sequence[str]) -> list[str]:
  """The image files under ``folder`` (an ``epath.Path``, local or bucket): its own files sorted,
  then each sub-folder's, sub-folders in sorted order (torchvision's ImageFolder order)."""
  entries = sorted(folder.iterdir(), key=lambda p: p.name)
  dirs = [e for e in entries if e.is_dir()]
  files = [os.fspath(e) for e in entries
           if e not in dirs and e.name.lower().endswith(tuple(extensions))]
  for d in dirs:
    files += _class_files(d, extensions)
  return files


def open_image_folder(root: str, split: str = 'train', *, on_corrupt: str = 'error',
                      allow_empty_classes: bool = False, verify: bool = True,
                      extensions: Sequence[str] = EXTENSIONS) -> ImageFolderSource:
  """Scans ``root`` (one sub-folder per class) into an :class:`ImageFolderSource`.

  Args:
    root: the folder whose sub-folders are the classes.
    split: a name for this set ('train', 'validation', ...), for messages and the pipeline.
    on_corrupt: 'error' (raise :class:`CorruptImageError` naming the files) or 'skip' (leave
      them out with a warning naming them).
    allow_empty_classes: keep class folders without images as classes (warning) instead of
      raising.
    verify: decode every image once now (otherwise a bad file fails later, inside tf.data).
    extensions: file name endings that count as images (case-insensitive).
  """
  if on_corrupt not in ON_CORRUPT:
    raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}.")
  top = storage.path(root)
  if not top.is_dir():
    raise FileNotFoundError(f'image folder not found: {root}')
  class_names = sorted(d.name for d in top.iterdir() if d.is_dir() and not d.name.startswith('.'))
  if not class_names:
    raise ValueError(f'{root} has no class sub-folders; the ImageFolder layout is '
                     f'{root}/<class name>/<image file>.')
  paths, labels, bad, empty = [], [], [], []
  for label, name in enumerate(class_names):
    good = []
    for path in _class_files(top / name, extensions):
      problem = _problem(path) if verify else None
      if problem:
        bad.append(f'{path} {problem}')
      else:
        good.append(path)
    if not good:
      empty.append(name)
    paths += good
    labels += [label] * len(good)
  if bad:
    listing = '\n  '.join(bad[:20]) + (f'\n  ... ({len(bad)} in all)' if len(bad) > 20 else '')
    if on_corrupt == 'error':
      raise CorruptImageError(f'{len(bad)} unreadable image file(s) in {root}:\n  {listing}\n'
                              f"Fix or remove them, or pass on_corrupt='skip' to leave them out.")
    warnings.warn(f'{root}: skipped {len(bad)} unreadable image file(s):\n  {listing}')
  if empty:
    msg = f'{root}: class folder(s) without images ({", ".join(extensions)}): {empty}'
    if not allow_empty_classes:
      raise ValueError(f'{msg}. Add images, remove the folder(s), or pass '
                       f'allow_empty_classes=True to keep them as classes without examples.')
    warnings.warn(f'{msg}; kept as classes without examples.')
  if not paths:
    raise ValueError(f'{root}: no images at all in {len(class_names)} class folder(s).')
  return ImageFolderSource(top.name, split, paths,
                           np.asarray(labels, np.int64), class_names)
