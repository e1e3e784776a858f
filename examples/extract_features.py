"""Multi-scale backbone features from any registered model.

  PYTHONPATH=. python examples/extract_features.py --model ghostnet_100                    # random weights
  PYTHONPATH=. python examples/extract_features.py --model repghostnet_100 --checkpoint repghostnet_1x.pth \\
      --images photo.jpg --output-stride 16 --strides 4,8,16,32 --deploy

Prints, for each level, the map's shape and its actual stride (input size / map size): with
``--output-stride 16`` the level-32 map is 1/16 of the input (the last stage dilates).
"""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Optional

import jax
import numpy as np

import ghostnets_jax as gj
from common import add_model_args, image_paths, load_images, load_variables, random_images


def main(argv: Optional[list[str]] = None) -> dict[int, np.ndarray]:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  add_model_args(p, 'ghostnet_100')
  p.add_argument('--images', nargs='*', default=(), help='image files or folders (default: random)')
  p.add_argument('--batch', type=int, default=2, help='random images when no --images')
  p.add_argument('--strides', default='2,4,8,16,32', help='feature levels, comma-separated')
  p.add_argument('--output-stride', type=int, default=32, choices=(8, 16, 32))
  p.add_argument('--deploy', action='store_true', help='run the re-parameterized form')
  a = p.parse_args(argv)

  size = a.size or gj.get_spec(a.model).input_size
  model = gj.create_model(a.model, feature_strides=tuple(int(s) for s in a.strides.split(',')),
                          output_stride=a.output_stride)
  variables = load_variables(a.model, model, a.checkpoint, size)
  if a.deploy:
    model, variables = gj.reparameterize(model, variables)
  x = load_images(image_paths(a.images), a.model, size) if a.images else random_images(a.batch, size)

  features = jax.jit(functools.partial(model.apply, train=False, method='features'))(variables, x)
  features = {s: np.asarray(f) for s, f in features.items()}
  print(f'{a.model}{" (deploy)" if a.deploy else ""}, input {x.shape}, output_stride {a.output_stride}')
  for s, f in features.items():
    print(f'  level {s:2d}: {str(f.shape):22s} stride {size / f.shape[1]:g}  '
          f'mean {f.mean():+.4f}  std {f.std():.4f}')
  return features


if __name__ == '__main__':
  main(sys.argv[1:])
