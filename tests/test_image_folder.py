"""The ImageFolder reader on a small folder made here: labels, pixels, corrupt files, empty classes."""
from __future__ import annotations

import pathlib
import warnings

import numpy as np
import pytest
from PIL import Image

from ghostnets_jax.data.image_folder import CorruptImageError, open_image_folder


def _save(path: pathlib.Path, array: np.ndarray) -> np.ndarray:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)
  return array


@pytest.fixture()
def folder(tmp_path):
  """cat: 2 PNGs (one grayscale, one in a sub-folder); dog: a PNG and a JPEG; notes.txt ignored."""
  rng = np.random.RandomState(0)
  root = tmp_path / 'pets'
  pixels = {
      'cat/a.png': _save(root / 'cat/a.png', rng.randint(0, 256, (12, 10, 3), np.uint8)),
      'cat/more/b.png': _save(root / 'cat/more/b.png', rng.randint(0, 256, (8, 9), np.uint8)),
      'dog/c.png': _save(root / 'dog/c.png', rng.randint(0, 256, (7, 11, 3), np.uint8)),
  }
  _save(root / 'dog/d.jpg', rng.randint(0, 256, (16, 16, 3), np.uint8))
  (root / 'dog/notes.txt').write_text('not an image')
  return root, pixels


def _corrupt(root: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
  garbage = root / 'dog/garbage.jpg'
  garbage.write_bytes(b'this is no JPEG')
  good = (root / 'dog/d.jpg').read_bytes()
  truncated = root / 'cat/truncated.jpg'
  truncated.write_bytes(good[:len(good) // 2])
  return garbage, truncated


def test_layout_labels_and_pixels(folder):
  root, pixels = folder
  src = open_image_folder(str(root))
  assert src.class_names == ['cat', 'dog'] and src.num_classes == 2 and len(src) == 4
  rel = [str(pathlib.Path(p).relative_to(root)) for p in src.paths]
  assert rel == ['cat/a.png', 'cat/more/b.png', 'dog/c.png', 'dog/d.jpg']
  np.testing.assert_array_equal(src.labels, [0, 0, 1, 1])
  examples = [src.features.deserialize_example(s) for s in src.fetch([0, 1, 2, 3])]
  for ex, name, label in zip(examples, rel, src.labels):
    assert int(ex['label']) == label
    image = ex['image'].numpy()
    assert image.dtype == np.uint8 and image.shape[2] == 3
    if name in pixels:  # lossless: the very pixels (grayscale repeated over RGB)
      want = pixels[name] if pixels[name].ndim == 3 else np.repeat(pixels[name][..., None], 3, -1)
      np.testing.assert_array_equal(image, want)
  from_ds = list(src.as_dataset().as_numpy_iterator())
  assert [int(e['label']) for e in from_ds] == [0, 0, 1, 1]
  for a, b in zip(from_ds, examples):
    np.testing.assert_array_equal(a['image'], b['image'].numpy())


def test_corrupt_images_are_named_or_skipped_with_a_warning(folder):
  root, _ = folder
  garbage, truncated = _corrupt(root)
  with pytest.raises(CorruptImageError) as err:
    open_image_folder(str(root))
  msg = str(err.value)
  assert '2 unreadable image file(s)' in msg and str(garbage) in msg and str(truncated) in msg
  assert "on_corrupt='skip'" in msg
  with pytest.warns(UserWarning, match='skipped 2 unreadable') as rec:
    src = open_image_folder(str(root), on_corrupt='skip')
  assert str(garbage) in str(rec[0].message) and str(truncated) in str(rec[0].message)
  assert len(src) == 4 and str(garbage) not in src.paths
  with pytest.raises(ValueError, match="on_corrupt must be one of"):
    open_image_folder(str(root), on_corrupt='ignore')


def test_empty_class_folder(folder):
  root, _ = folder
  (root / 'bird').mkdir()  # sorts first: labels would shift if it were dropped
  with pytest.raises(ValueError, match=r"without images .*\['bird'\].*allow_empty_classes=True"):
    open_image_folder(str(root))
  with warnings.catch_warnings(record=True) as rec:
    warnings.simplefilter('always')
    src = open_image_folder(str(root), allow_empty_classes=True)
  assert any("['bird']" in str(w.message) for w in rec)
  assert src.class_names == ['bird', 'cat', 'dog'] and src.num_classes == 3
  np.testing.assert_array_equal(src.labels, [1, 1, 2, 2])
  assert src.features['label'].num_classes == 3


def test_bad_roots(tmp_path):
  with pytest.raises(FileNotFoundError, match='image folder not found'):
    open_image_folder(str(tmp_path / 'missing'))
  (tmp_path / 'flat').mkdir()
  _save(tmp_path / 'flat/x.png', np.zeros((4, 4, 3), np.uint8))
  with pytest.raises(ValueError, match='no class sub-folders'):
    open_image_folder(str(tmp_path / 'flat'))
