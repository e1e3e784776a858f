"""Evaluations run after the classification eval (``config.eval.evaluators``), by name.

``retrieval`` (MultiGrain): embeddings of the eval split and of a strongly augmented copy of each
eval image, then :func:`ghostnets_jax.metrics.retrieval.retrieval_report`: class-level
retrieval (same label = relevant) and copy detection (the original is the one relevant item),
both as mAP and recall@1.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

from ghostnets_jax.data import pipeline, preprocess
from ghostnets_jax.train import mesh as mesh_lib

_EVALUATORS: dict[str, Callable[..., dict[str, float]]] = {}
# The copies of copy detection: a crop of 25-100 % of the image, flip, RandAugment m9.
COPY_AUGMENT = dict(scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5,
                    auto_augment='rand-m9-mstd0.5')


def register_evaluator(name: str):
  """Registers ``fn(experiment, variables) -> {metric: value}`` under ``name``."""
  def deco(fn):
    _EVALUATORS[name] = fn
    return fn
  return deco


def get_evaluator(name: str) -> Callable[..., dict[str, float]]:
  if name not in _EVALUATORS:
    raise ValueError(f'unknown evaluator {name!r}; registered: {sorted(_EVALUATORS)}')
  return _EVALUATORS[name]


def embed_split(exp: Any, variables: dict, spec: str, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
  """(L2-normalised embeddings, labels) of the whole eval split (all processes), in order."""
  r = exp.resolved
  if getattr(exp, '_embed_fn', None) is None:
    model = exp.model
    exp._embed_fn = jax.jit(
        lambda v, b: (model.apply(v, b['image'], method='embed'), b['label'], b['mask']),
        out_shardings=mesh_lib.replicated(exp.mesh))
  ds, _ = pipeline.eval_dataset(
      exp.eval_source, spec, r['eval_batch_size'] // jax.process_count(),
      process_index=jax.process_index(), process_count=jax.process_count(),
      threads=exp.config.data.threads, seed=seed)
  embs, labels, masks = [], [], []
  for batch in ds.as_numpy_iterator():
    del batch['index']
    e, l, m = exp._embed_fn(variables, mesh_lib.global_batch(batch, exp.batch_sharding))
    embs.append(multihost_utils.process_allgather(e, tiled=True))
    labels.append(multihost_utils.process_allgather(l, tiled=True))
    masks.append(multihost_utils.process_allgather(m, tiled=True))
  # Global batch b holds rows [p * local, (p + 1) * local) of process p's range, and process p
  # reads the contiguous range p of the split: restore the split order.
  emb, lab, mask = (np.concatenate(x) for x in (embs, labels, masks))
  p, local = jax.process_count(), r['eval_batch_size'] // jax.process_count()
  order = lambda x: x.reshape(-1, p, local, *x.shape[1:]).swapaxes(0, 1).reshape(x.shape)  # noqa: E731
  emb, lab, mask = order(emb), order(lab), order(mask) > 0
  return np.asarray(emb[mask], np.float32), np.asarray(lab[mask])


@register_evaluator('retrieval')
def retrieval(exp: Any, variables: dict) -> dict[str, float]:
  """MultiGrain's retrieval evaluation on the eval split: ``retrieval/class/{mAP,recall@1}``
  and ``retrieval/copy/{mAP,recall@1}`` (copies: :data:`COPY_AUGMENT` of each eval image)."""
  from ghostnets_jax.metrics.retrieval import retrieval_report
  r = exp.resolved
  size = r['eval_image_size']
  emb, labels = embed_split(exp, variables, r['eval_preprocess'])
  copy_spec = preprocess.train_spec(size, interpolation=r['eval_interpolation'], mean=r['mean'],
                                    std=r['std'], **COPY_AUGMENT)
  copies, _ = embed_split(exp, variables, copy_spec, seed=exp.config.seed + 1)
  res = retrieval_report(emb, labels, copies, np.arange(len(copies)))
  return {f'retrieval/{k}': float(v) for k, v in res.items()}
