"""Evaluations run after the classification eval (``config.eval.evaluators``), by name.

An evaluator is built once per run from what it reads, passed explicitly (the model, the mesh,
the eval split, the resolved run) and from its own keyword arguments
(``config.eval.evaluator_kwargs.<name>``); calling it with a model's variables returns
``{metric: value}``.

``retrieval`` (MultiGrain): embeddings of the eval split and of a strongly augmented copy of each
eval image, then :func:`ghostnets_jax.metrics.retrieval.retrieval_report`: class-level
retrieval (same label = relevant) and copy detection (the original is the one relevant item),
both as mAP and recall@1.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils

from ghostnets_jax.data import datasets, pipeline, preprocess
from ghostnets_jax.errors import ConfigError
from ghostnets_jax.train import mesh as mesh_lib
from ghostnets_jax.train.run_config import RunConfig

Evaluator = Callable[[dict], dict[str, float]]
_EVALUATORS: dict[str, Callable[..., Evaluator]] = {}


def register_evaluator(name: str):
  """Registers ``factory(model, mesh, source, run, *, threads, seed, **kwargs) -> evaluator``
  (``evaluator(variables) -> {metric: value}``) under ``name``."""
  def deco(factory):
    _EVALUATORS[name] = factory
    return factory
  return deco


def get_evaluator(name: str) -> Callable[..., Evaluator]:
  if name not in _EVALUATORS:
    raise ConfigError(f'unknown evaluator {name!r} in config.eval.evaluators; registered: '
                      f'{sorted(_EVALUATORS)}')
  return _EVALUATORS[name]


@register_evaluator('retrieval')
class Retrieval:
  """MultiGrain's retrieval evaluation on the eval split: ``retrieval/class/{mAP,recall@1}``
  and ``retrieval/copy/{mAP,recall@1}``; the copy-detection queries are ``copy_augment``
  (keyword arguments of :func:`ghostnets_jax.data.preprocess.train_spec`: ``scale``,
  ``ratio``, ``hflip``, ``auto_augment``, ...) of each eval image."""

  def __init__(self, model: Any, mesh: Any, source: datasets.Source, run: RunConfig, *,
               threads: Optional[int] = None, seed: int = 0,
               copy_augment: Optional[Mapping[str, Any]] = None):
    if not copy_augment:
      raise ConfigError('the retrieval evaluator needs the augmentation of its copies: set '
                        'config.eval.evaluator_kwargs.retrieval.copy_augment (see '
                        'configs/multigrain.py).')
    self.mesh, self.source, self.run, self.threads, self.seed = mesh, source, run, threads, seed
    self.copy_spec = preprocess.train_spec(
        run.eval_image_size, interpolation=run.eval_interpolation, mean=run.mean, std=run.std,
        **dict(copy_augment))
    self._embed = jax.jit(
        lambda v, b: (model.apply(v, b['image'], method='embed'), b['label'], b['mask']),
        out_shardings=mesh_lib.replicated(mesh))

  def embed_split(self, variables: dict, spec: str, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(L2-normalised embeddings, labels) of the whole eval split (all processes), in order."""
    p = jax.process_count()
    local = self.run.eval_batch_size // p
    ds, _ = pipeline.eval_dataset(self.source, spec, local, process_index=jax.process_index(),
                                  process_count=p, threads=self.threads, seed=seed)
    sharding = mesh_lib.batch_sharding(self.mesh)
    embs, labels, masks = [], [], []
    for batch in ds.as_numpy_iterator():
      del batch['index']
      e, l, m = self._embed(variables, mesh_lib.global_batch(batch, sharding))
      embs.append(multihost_utils.process_allgather(e, tiled=True))
      labels.append(multihost_utils.process_allgather(l, tiled=True))
      masks.append(multihost_utils.process_allgather(m, tiled=True))
    # Global batch b holds rows [p * local, (p + 1) * local) of process p's range, and process p
    # reads the contiguous range p of the split: restore the split order.
    order = lambda x: x.reshape(-1, p, local, *x.shape[1:]).swapaxes(0, 1).reshape(x.shape)  # noqa: E731
    emb, lab, mask = (order(np.concatenate(x)) for x in (embs, labels, masks))
    mask = mask > 0
    return np.asarray(emb[mask], np.float32), np.asarray(lab[mask])

  def __call__(self, variables: dict) -> dict[str, float]:
    from ghostnets_jax.metrics.retrieval import retrieval_report
    emb, labels = self.embed_split(variables, self.run.eval_preprocess)
    copies, _ = self.embed_split(variables, self.copy_spec, seed=self.seed + 1)
    res = retrieval_report(emb, labels, copies, np.arange(len(copies)))
    return {f'retrieval/{k}': float(v) for k, v in res.items()}
