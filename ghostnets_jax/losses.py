"""Losses as pure functions: label-smoothed cross-entropy and MultiGrain's joint loss.

MultiGrain (arXiv:1902.05509) trains with ``lam * CE + (1 - lam) * margin`` where the margin loss
(Wu et al. 2017, "Sampling Matters in Deep Embedding Learning") pulls repeated augmentations of
the same image (same *instance id*, not class) within ``beta - alpha`` and pushes negatives beyond
``beta + alpha``. Negatives are drawn with probability inversely proportional to the density of
pairwise distances on the unit sphere, ``q(d) ~ d^(C-2) (1 - d^2/4)^((C-3)/2)``, with ``d``
clipped below at 0.5 and pairs at ``d >= 1.4`` excluded (they give no loss).

Everything works on the whole (global) batch with static shapes, so it jits and shards: pairs
are the ``(B, B)`` grid masked by "same instance, not the same sample".
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import optax

from ghostnets_jax.layers.gem import l2_normalize

BETA_INIT = 1.2  # the margin loss's learnable boundary, initial value (Wu et al.; MultiGrain)


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Mean softmax cross-entropy against ``(1 - s) * one_hot + s / num_classes`` (torch convention)."""
  k = logits.shape[-1]
  targets = optax.smooth_labels(jax.nn.one_hot(labels, k), label_smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets))


def pairwise_sq_distances(x: jax.Array) -> jax.Array:
  """Squared Euclidean distances between the rows of ``x`` (float32 Gram matrix, full precision)."""
  x = x.astype(jnp.float32)
  sq = jnp.sum(x * x, axis=-1)
  gram = jnp.matmul(x, x.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)


def positive_mask(instance_ids: jax.Array) -> jax.Array:
  """``(B, B)``: ``[i, j]`` is a positive pair (same instance, ``i != j``)."""
  same = instance_ids[:, None] == instance_ids[None, :]
  return same & ~jnp.eye(instance_ids.shape[0], dtype=bool)


def negative_log_probs(embeddings: jax.Array, instance_ids: jax.Array, cutoff: float = 0.5,
                       nonzero_loss_cutoff: float = 1.4) -> jax.Array:
  """Distance-weighted sampling distribution of negatives, one row per anchor (log-probabilities).

  ``p(n | a) ~ 1 / q(max(d_an, cutoff))`` over other instances with ``d_an < nonzero_loss_cutoff``;
  an anchor with no such negative samples uniformly among all other instances. Entries that are
  never drawn are ``-inf`` (a row is all ``-inf`` only when the batch holds a single instance).
  ``embeddings`` must be L2-normalised (``C`` is their dimension).
  """
  c = embeddings.shape[-1]
  d = jnp.sqrt(pairwise_sq_distances(embeddings))
  dc = jnp.maximum(d, cutoff)
  # 1 - d^2/4 > 0.5 wherever the weight is used (d < 1.4); the clip only keeps the rest finite.
  log_w = (2.0 - c) * jnp.log(dc) - 0.5 * (c - 3.0) * jnp.log(jnp.maximum(1.0 - 0.25 * dc * dc, 1e-12))
  other = instance_ids[:, None] != instance_ids[None, :]
  within = other & (d < nonzero_loss_cutoff)
  has_within = jnp.any(within, axis=1, keepdims=True)
  allowed = jnp.where(has_within, within, other)
  log_w = jnp.where(allowed, jnp.where(has_within, log_w, 0.0), -jnp.inf)  # else: uniform
  log_z = jax.scipy.special.logsumexp(log_w, axis=1, keepdims=True)
  return jnp.where(allowed, log_w - log_z, -jnp.inf)


def sample_negatives(rng: jax.Array, log_probs: jax.Array, pos_mask: jax.Array) -> jax.Array:
  """A negative ``n[i, j]`` for every positive pair ``(i, j)``, drawn from row ``i`` of ``log_probs``.

  The negatives of one anchor are drawn without replacement (Gumbel top-k: the r-th positive
  of anchor ``i`` gets the r-th negative drawn); a row with fewer possible negatives than
  positives reuses its draws cyclically (for m = 3 repeats, i.e. two positives, this is the
  official fallback to drawing with replacement). Entries off ``pos_mask`` are arbitrary.
  """
  finite = jnp.isfinite(log_probs)
  keys = jnp.where(finite, log_probs + jax.random.gumbel(rng, log_probs.shape), -jnp.inf)
  order = jnp.argsort(-keys, axis=1)  # each anchor's negatives in sampled order
  support = jnp.maximum(jnp.sum(finite, axis=1, keepdims=True), 1)
  rank = jnp.clip(jnp.cumsum(pos_mask, axis=1) - 1, 0, None) % support
  return jnp.take_along_axis(order, rank, axis=1)


def margin_loss(embeddings: jax.Array, instance_ids: jax.Array, negatives: jax.Array,
                beta: jax.Array, margin: float = 0.2, eps: float = 1e-8) -> jax.Array:
  """Margin loss over positive pairs ``(i, j)`` with negative ``negatives[i, j]``.

  ``sum(relu(d_ap - beta + margin) + relu(beta - d_an + margin)) / max(#nonzero terms, 1)``,
  ``d = sqrt(|a - b|^2 + eps)``; 0 for a batch without positive pairs.
  """
  pos = positive_mask(instance_ids)
  d2 = pairwise_sq_distances(embeddings)
  d_ap = jnp.sqrt(d2 + eps)
  d_an = jnp.sqrt(jnp.take_along_axis(d2, negatives, axis=1) + eps)
  has_neg = (instance_ids[negatives] != instance_ids[:, None])
  pos_loss = jnp.where(pos, jax.nn.relu(d_ap - beta + margin), 0.0)
  neg_loss = jnp.where(pos & has_neg, jax.nn.relu(beta - d_an + margin), 0.0)
  count = jnp.sum(pos_loss > 0) + jnp.sum(neg_loss > 0)
  return jnp.sum(pos_loss + neg_loss) / jnp.maximum(count, 1).astype(jnp.float32)


def multigrain_loss(logits: jax.Array, embeddings: jax.Array, labels: jax.Array,
                    instance_ids: jax.Array, beta: jax.Array, rng: jax.Array, *, lam: float = 0.5,
                    label_smoothing: float = 0.1, margin: float = 0.2, cutoff: float = 0.5,
                    nonzero_loss_cutoff: float = 1.4,
                    negatives: Optional[jax.Array] = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """``lam * CE(logits, labels) + (1 - lam) * margin_loss`` with distance-weighted negatives.

  Args:
    logits: ``(B, K)``; labels: ``(B,)`` classes.
    embeddings: ``(B, C)`` (normalised here); instance_ids: ``(B,)`` image ids, equal for the
      repeated augmentations of one image (``ghostnets_jax.data.sampler``).
    beta: the learnable boundary (a scalar parameter, initialised at :data:`BETA_INIT`).
    rng: key for sampling negatives; ``negatives`` (``(B, B)`` indices) replaces the sampling.

  Returns: the loss and ``{'ce', 'margin', 'beta', 'positive_pairs'}``.
  """
  ce = cross_entropy(logits, labels, label_smoothing)
  emb = l2_normalize(embeddings.astype(jnp.float32))
  pos = positive_mask(instance_ids)
  if negatives is None:
    log_p = negative_log_probs(jax.lax.stop_gradient(emb), instance_ids, cutoff, nonzero_loss_cutoff)
    negatives = sample_negatives(rng, log_p, pos)
  m = margin_loss(emb, instance_ids, negatives, beta, margin)
  loss = lam * ce + (1.0 - lam) * m
  return loss, {'ce': ce, 'margin': m, 'beta': jnp.asarray(beta), 'positive_pairs': jnp.sum(pos)}
