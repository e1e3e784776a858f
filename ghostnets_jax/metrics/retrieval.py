"""Retrieval evaluation of embeddings: PCA-whitening, mAP and recall@1 (numpy, chunked).

Two tasks, as in MultiGrain (arXiv:1902.05509):
  * class-level retrieval: every eval image queries all the others; same label = relevant.
  * copy detection: each query is a (strongly augmented) copy of one gallery image; that original
    is the one relevant item.
Both are :func:`retrieval_metrics` with different labels. Similarity is the dot product of
L2-normalised (optionally whitened) embeddings; ties rank the lower gallery index first.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np


def l2n(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x / (np.linalg.norm(x, axis=-1, keepdims=True) + eps)


@dataclasses.dataclass(frozen=True)
class Whitening:
  """``l2n((l2n(x) - mean) @ projection)``: PCA-whitening fitted on training embeddings."""
  mean: np.ndarray
  projection: np.ndarray  # (C, dim): principal axes scaled by 1 / sqrt(variance)

  def __call__(self, x: np.ndarray) -> np.ndarray:
    return l2n((l2n(x) - self.mean) @ self.projection)


def fit_pca_whitening(embeddings: np.ndarray, dim: Optional[int] = None, eps: float = 1e-12) -> Whitening:
  """PCA-whitening of (L2-normalised) ``embeddings`` keeping ``dim`` components (all by default).

  After it, the training embeddings have zero mean and identity covariance in the kept
  components (sample covariance, ``n - 1``), as scikit-learn's ``PCA(whiten=True)``.
  """
  x = l2n(embeddings)
  n, c = x.shape
  if n < 2:
    raise ValueError(f'PCA-whitening needs at least 2 training embeddings, got {n}.')
  dim = min(n - 1, c) if dim is None else dim
  if not 0 < dim <= min(n, c):
    raise ValueError(f'dim={dim} must be in [1, {min(n, c)}] for {n} embeddings of size {c}.')
  mean = x.mean(axis=0)
  _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
  var = s[:dim] ** 2 / (n - 1)
  return Whitening(mean, vt[:dim].T / np.sqrt(var + eps))


def retrieval_metrics(queries: np.ndarray, gallery: np.ndarray, query_labels: np.ndarray,
                      gallery_labels: np.ndarray, exclude_self: bool = False,
                      chunk: int = 512) -> dict[str, float]:
  """mAP and recall@1 of ranking ``gallery`` by cosine similarity to each query.

  Gallery item ``j`` is relevant to query ``i`` when ``gallery_labels[j] == query_labels[i]``.
  ``exclude_self`` drops gallery item ``i`` from query ``i``'s ranking (leave-one-out, when the
  queries are the gallery). Queries without any relevant item are left out of both means;
  ``'queries'`` counts the ones used.
  """
  q, g = l2n(queries), l2n(gallery)
  ql, gl = np.asarray(query_labels), np.asarray(gallery_labels)
  if q.shape[1] != g.shape[1] or len(ql) != len(q) or len(gl) != len(g):
    raise ValueError(f'shapes do not match: queries {q.shape}, gallery {g.shape}, '
                     f'{len(ql)} query labels, {len(gl)} gallery labels.')
  if exclude_self and len(q) != len(g):
    raise ValueError('exclude_self needs the queries to be the gallery (same length).')
  ap_sum, hits, used = 0.0, 0, 0
  ranks = np.arange(1, len(g) + 1)
  for start in range(0, len(q), chunk):
    scores = q[start:start + chunk] @ g.T
    rows = np.arange(len(scores))
    if exclude_self:
      scores[rows, start + rows] = -np.inf
    order = np.argsort(-scores, axis=1, kind='stable')
    rel = gl[order] == ql[start:start + chunk, None]
    if exclude_self:
      rel &= order != (start + rows)[:, None]
    n_rel = rel.sum(axis=1)
    ok = n_rel > 0
    precision = np.cumsum(rel, axis=1) / ranks
    ap_sum += float(((precision * rel).sum(axis=1)[ok] / n_rel[ok]).sum())
    hits += int(rel[ok, 0].sum())
    used += int(ok.sum())
  if used == 0:
    raise ValueError('no query has a relevant gallery item: check the labels.')
  return {'mAP': ap_sum / used, 'recall@1': hits / used, 'queries': used}


def class_retrieval(embeddings: np.ndarray, labels: np.ndarray, **kwargs) -> dict[str, float]:
  """Leave-one-out class-level retrieval within one set: same label = relevant."""
  return retrieval_metrics(embeddings, embeddings, labels, labels, exclude_self=True, **kwargs)


def copy_detection(copies: np.ndarray, originals: np.ndarray, source_index: np.ndarray,
                   **kwargs) -> dict[str, float]:
  """Copy detection: ``copies[i]`` is a copy of ``originals[source_index[i]]``, its only match."""
  return retrieval_metrics(copies, originals, source_index, np.arange(len(originals)), **kwargs)


def retrieval_report(eval_embeddings: np.ndarray, eval_labels: np.ndarray,
                     copy_embeddings: Optional[np.ndarray] = None,
                     copy_source: Optional[np.ndarray] = None,
                     train_embeddings: Optional[np.ndarray] = None,
                     whitening_dim: Optional[int] = None) -> dict[str, float]:
  """Both tasks, flat ``{'class/mAP', 'class/recall@1', 'copy/mAP', 'copy/recall@1'}``.

  With ``train_embeddings`` every embedding is PCA-whitened (fitted on them) first.
  """
  w = fit_pca_whitening(train_embeddings, whitening_dim) if train_embeddings is not None else l2n
  out = {f'class/{k}': v for k, v in class_retrieval(w(eval_embeddings), eval_labels).items()}
  if copy_embeddings is not None:
    if copy_source is None:
      raise ValueError('copy_embeddings need copy_source: the gallery index each copy was made from.')
    res = copy_detection(w(copy_embeddings), w(eval_embeddings), copy_source)
    out.update({f'copy/{k}': v for k, v in res.items()})
  return out
