"""Rebuilds ghostnets_jax/data/files/fashion_mnist_12k.npz from Fashion-MNIST's original files.

  apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb deb
  python tools/make_demo_data.py deb/usr/share/datasets/fashion-mnist

Keeps the first 1,000 training and the first 200 test images of each class, in their original
order (10,000 train / 2,000 test), with their index in the source file.
"""
from __future__ import annotations

import gzip
import os
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), '..', 'ghostnets_jax', 'data', 'files',
                   'fashion_mnist_12k.npz')


def read(path: str, offset: int) -> np.ndarray:
  with gzip.open(path) as f:
    return np.frombuffer(f.read(), np.uint8, offset=offset)


def main(src: str) -> None:
  out = {}
  for split, per_class, prefix in (('train', 1000, 'train'), ('test', 200, 't10k')):
    images = read(os.path.join(src, f'{prefix}-images-idx3-ubyte.gz'), 16).reshape(-1, 28, 28)
    labels = read(os.path.join(src, f'{prefix}-labels-idx1-ubyte.gz'), 8)
    idx = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)]))
    out[f'{split}_images'], out[f'{split}_labels'] = images[idx], labels[idx]
    out[f'{split}_index'] = idx.astype(np.int32)
  np.savez_compressed(OUT, **out)
  print(f'wrote {OUT}: ' + ', '.join(f'{k} {v.shape}' for k, v in out.items()))


if __name__ == '__main__':
  main(sys.argv[1])
