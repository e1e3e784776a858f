"""``fashion_mnist_embedded``: the demo dataset shipped inside the package (no downloads).

10,000 train / 2,000 test real photographs of clothing (Fashion-MNIST, MIT licence; see
``ghostnets_jax/data/files/README.md``), served through TFDS with ``imagenet2012``'s feature
schema (``image``, ``label``, ``file_name``) so the same input pipeline reads both. Images are
28x28 grayscale stored as lossless 3-channel PNG.
"""
from __future__ import annotations

import importlib.resources

import numpy as np
import tensorflow_datasets as tfds

DATA_FILE = 'fashion_mnist_12k.npz'
CLASS_NAMES = ('t-shirt_top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt',
               'sneaker', 'bag', 'ankle_boot')


def load_arrays() -> dict[str, np.ndarray]:
  with importlib.resources.files('ghostnets_jax.data').joinpath('files', DATA_FILE).open('rb') as f:
    with np.load(f) as data:
      return {k: data[k] for k in data.files}


class FashionMnistEmbedded(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST subset bundled with ghostnets_jax (1,000 train / 200 test images per class)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First 1,000 train / 200 test images of each class.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3), encoding_format='png'),
            'label': tfds.features.ClassLabel(names=CLASS_NAMES),
            'file_name': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://github.com/zalandoresearch/fashion-mnist',
        license='MIT',
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    arrays = load_arrays()
    return {'train': self._generate_examples(arrays, 'train'),
            'test': self._generate_examples(arrays, 'test')}

  def _generate_examples(self, arrays: dict[str, np.ndarray], split: str):
    images, labels, index = arrays[f'{split}_images'], arrays[f'{split}_labels'], arrays[f'{split}_index']
    for img, label, i in zip(images, labels, index):
      name = f'fashion_mnist_{split}_{int(i):05d}.png'
      yield name, {'image': np.repeat(img[:, :, None], 3, axis=2), 'label': int(label),
                   'file_name': name}
