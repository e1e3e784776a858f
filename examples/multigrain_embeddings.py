"""Image retrieval with MultiGrain embeddings: L2-normalised GeM vectors, nearest neighbours.

  PYTHONPATH=. python examples/multigrain_embeddings.py --gallery photos/ --queries query.jpg \\
      --checkpoint multigrain_resnet50.pth --topk 5
  PYTHONPATH=. python examples/multigrain_embeddings.py          # demo: random gallery, perturbed copies as queries

Embeddings are ``model.apply(variables, x, method='embed')``; cosine similarity is their dot
product. Without ``--gallery``, the demo embeds random images and, as queries, noisy and
brightened copies of some of them, then reports copy-detection recall@1 and mAP
(``ghostnets_jax.metrics.retrieval``): each copy should find its original.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Optional

import jax
import numpy as np

import ghostnets_jax as gj
from common import add_model_args, image_paths, load_images, load_variables, random_images
from ghostnets_jax.metrics.retrieval import copy_detection


def embed_batches(model, variables, images: np.ndarray, batch: int) -> np.ndarray:
  """L2-normalised embeddings of ``images`` (NHWC), ``batch`` at a time (last batch padded)."""
  fn = jax.jit(functools.partial(model.apply, train=False, method='embed'))
  out = []
  for i in range(0, len(images), batch):
    chunk = images[i:i + batch]
    padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), 0)]) if len(chunk) < batch else chunk
    out.append(np.asarray(fn(variables, padded))[:len(chunk)])
  return np.concatenate(out)


def main(argv: Optional[list[str]] = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  add_model_args(p, 'multigrain_resnet50')
  p.add_argument('--gallery', nargs='*', default=(), help='gallery image files or folders')
  p.add_argument('--queries', nargs='*', default=(), help='query images (default: the gallery, '
                 'each one leaving itself out)')
  p.add_argument('--topk', type=int, default=3)
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--demo-size', type=int, default=8, help='random gallery images in the demo')
  a = p.parse_args(argv)

  size = a.size or gj.get_spec(a.model).input_size
  model = gj.create_model(a.model)
  variables = load_variables(a.model, model, a.checkpoint, size)
  source = None
  if a.gallery:
    gallery_names = image_paths(a.gallery)
    gallery = load_images(gallery_names, a.model, size)
    query_names = image_paths(a.queries) if a.queries else gallery_names
    queries = load_images(query_names, a.model, size) if a.queries else gallery
  else:
    gallery = random_images(a.demo_size, size)
    source = np.arange(0, a.demo_size, 2)  # queries: perturbed copies of every other image
    rng = np.random.RandomState(1)
    queries = (gallery[source] * 1.1 + 0.1 + rng.normal(0, 0.05, gallery[source].shape)).astype(np.float32)
    gallery_names = [f'random_{i}' for i in range(len(gallery))]
    query_names = [f'copy_of_{i}' for i in source]

  g = embed_batches(model, variables, gallery, a.batch)
  q = g if queries is gallery else embed_batches(model, variables, queries, a.batch)
  scores = q @ g.T
  if queries is gallery:
    np.fill_diagonal(scores, -np.inf)  # leave-one-out
  k = min(a.topk, len(g) - (queries is gallery))
  neighbours = np.argsort(-scores, axis=1, kind='stable')[:, :k]
  print(f'{a.model}: {len(g)} gallery, {len(q)} queries, embedding dim {g.shape[1]}, '
        f'norms {np.linalg.norm(g, axis=1).min():.4f}..{np.linalg.norm(g, axis=1).max():.4f}')
  for i, row in enumerate(neighbours):
    hits = ', '.join(f'{os.path.basename(gallery_names[j])} ({scores[i, j]:.3f})' for j in row)
    print(f'  {os.path.basename(query_names[i])}: {hits}')
  result = {'gallery_embeddings': g, 'query_embeddings': q, 'neighbours': neighbours, 'source': source}
  if source is not None:
    result.update(copy_detection(q, g, source))
    print(f'  copy detection: recall@1 {result["recall@1"]:.3f}, mAP {result["mAP"]:.3f}')
  return result


if __name__ == '__main__':
  main(sys.argv[1:])
