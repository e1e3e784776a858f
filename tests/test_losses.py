"""MultiGrain's loss: cross-entropy, margin loss (against numpy), distance-weighted negative sampling."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ghostnets_jax import losses


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def batch(seed=0, n_inst=4, repeats=3, dim=8, spread=0.5):
  """Repeated augmentations: ``repeats`` noisy copies of ``n_inst`` random unit vectors."""
  rng = np.random.RandomState(seed)
  base = unit(rng.randn(n_inst, dim))
  ids = np.repeat(np.arange(n_inst), repeats)
  emb = unit(base[ids] + spread * rng.randn(len(ids), dim)).astype(np.float32)
  return emb, ids


def numpy_margin_loss(emb, ids, negatives, beta, margin=0.2, eps=1e-8):
  """The margin loss written out pair by pair (official normalisation: #non-zero terms)."""
  emb = emb.astype(np.float64)
  total, count = 0.0, 0
  for i in range(len(ids)):
    for j in range(len(ids)):
      if i == j or ids[i] != ids[j]:
        continue
      n = negatives[i, j]
      d_ap = np.sqrt(np.sum((emb[j] - emb[i]) ** 2) + eps)
      d_an = np.sqrt(np.sum((emb[n] - emb[i]) ** 2) + eps)
      pos, neg = max(d_ap - beta + margin, 0.0), max(beta - d_an + margin, 0.0)
      total += pos + neg
      count += int(pos > 0) + int(neg > 0)
  return total / max(count, 1)


def random_negatives(ids, seed=0):
  rng = np.random.RandomState(seed)
  return np.array([[rng.choice(np.flatnonzero(ids != ids[i])) for _ in ids] for i in range(len(ids))])


def test_cross_entropy_with_label_smoothing_matches_torch():
  rng = np.random.RandomState(0)
  logits, labels = rng.randn(6, 11).astype(np.float32) * 3, rng.randint(0, 11, 6)
  for s in (0.0, 0.1):
    want = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), label_smoothing=s)
    assert abs(float(losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), s)) - float(want)) < 1e-5


@pytest.mark.parametrize('beta', [1.2, 0.9])
def test_margin_loss_matches_numpy(beta):
  emb, ids = batch()
  neg = random_negatives(ids)
  got = jax.jit(losses.margin_loss)(jnp.asarray(emb), jnp.asarray(ids), jnp.asarray(neg), jnp.float32(beta))
  want = numpy_margin_loss(emb, ids, neg, beta)
  assert want > 0 and abs(float(got) - want) < 1e-5


def test_margin_loss_without_positive_pairs_is_zero():
  emb, _ = batch()
  ids = np.arange(len(emb))
  neg = np.zeros((len(ids), len(ids)), np.int32)
  assert float(jax.jit(losses.margin_loss)(jnp.asarray(emb), jnp.asarray(ids), jnp.asarray(neg), 1.2)) == 0.0


def test_multigrain_loss_combines_terms_and_has_gradients():
  emb, ids = batch(seed=1)
  raw = emb * 3.0  # the loss normalises the embeddings itself
  rng = np.random.RandomState(1)
  logits, labels = rng.randn(len(ids), 5).astype(np.float32), rng.randint(0, 5, len(ids))
  neg = random_negatives(ids, seed=1)
  loss, aux = jax.jit(functools.partial(losses.multigrain_loss, rng=None))(
      jnp.asarray(logits), jnp.asarray(raw), jnp.asarray(labels), jnp.asarray(ids),
      jnp.float32(losses.BETA_INIT), negatives=jnp.asarray(neg))
  ce = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), label_smoothing=0.1))
  want = 0.5 * ce + 0.5 * numpy_margin_loss(emb, ids, neg, 1.2)
  assert abs(float(loss) - want) < 1e-5
  assert int(aux['positive_pairs']) == 4 * 3 * 2
  # sampled negatives, jitted: gradients reach beta, embeddings and logits
  fn = jax.jit(jax.grad(lambda lg, e, b: losses.multigrain_loss(lg, e, jnp.asarray(labels), jnp.asarray(ids),
                                                                b, jax.random.PRNGKey(0))[0], argnums=(0, 1, 2)))
  g_logits, g_emb, g_beta = fn(jnp.asarray(logits), jnp.asarray(raw), jnp.float32(1.2))
  assert float(g_beta) != 0.0 and float(jnp.abs(g_emb).sum()) > 0 and float(jnp.abs(g_logits).sum()) > 0


def numpy_negative_probs(emb, ids, cutoff=0.5, far=1.4):
  c = emb.shape[1]
  d = np.sqrt(np.maximum(((emb[:, None] - emb[None]) ** 2).sum(-1), 0))
  dc = np.maximum(d, cutoff)
  with np.errstate(divide='ignore', invalid='ignore'):
    w = dc ** (2.0 - c) * (1.0 - dc ** 2 / 4) ** (-(c - 3) / 2)  # 1 / q(d)
  ok = (ids[:, None] != ids[None]) & (d < far)
  w = np.where(ok, w, 0.0)
  return w / w.sum(1, keepdims=True)


def spread_batch():
  """Anchor 0 (positive: 1) with negatives at chosen distances, two of them inside the 0.5 clip."""
  c = 6
  e0 = np.eye(c)[0]
  def at(dist, axis):  # unit vector at chordal distance ``dist`` from e0
    cos = 1 - dist ** 2 / 2
    return cos * e0 + np.sqrt(1 - cos ** 2) * np.eye(c)[axis]
  emb = np.stack([e0, at(0.3, 1), at(0.2, 2), at(0.45, 3), at(0.8, 4), at(1.1, 5), at(1.3, 1),
                  at(1.5, 2), at(1.9, 3)])
  ids = np.array([0, 0, 1, 2, 3, 4, 5, 6, 7])
  return emb.astype(np.float32), ids


def test_negative_distribution_matches_inverse_sphere_density():
  emb, ids = spread_batch()
  log_p = np.asarray(jax.jit(losses.negative_log_probs)(jnp.asarray(emb), jnp.asarray(ids)))
  want = numpy_negative_probs(emb.astype(np.float64), ids)
  rows = np.isfinite(want).all(1)  # rows with a negative inside 1.4 (the others fall back)
  assert rows[:2].all()
  np.testing.assert_allclose(np.exp(log_p[rows]), want[rows], atol=1e-5)
  p0 = want[0]
  assert p0[[0, 1, 7, 8]].sum() == 0  # itself, its positive, and d >= 1.4 are never drawn
  assert p0[2] == pytest.approx(p0[3], rel=1e-6)  # both inside the clip: weight of d = 0.5
  assert p0[3] > p0[4] > p0[5] > p0[6] > 0  # 1/q(d) falls from 0.5 to 1.4 (its minimum is ~1.5 at C=6)


def test_sampler_draws_from_that_distribution():
  emb, ids = spread_batch()
  log_p = jax.jit(losses.negative_log_probs)(jnp.asarray(emb), jnp.asarray(ids))
  pos = losses.positive_mask(jnp.asarray(ids))
  n = 20000
  draws = jax.jit(jax.vmap(lambda k: losses.sample_negatives(k, log_p, pos)[0, 1]))(
      jax.random.split(jax.random.PRNGKey(0), n))
  freq = np.bincount(np.asarray(draws), minlength=len(ids)) / n
  p = np.exp(np.asarray(log_p[0]))
  sigma = np.sqrt(p * (1 - p) / n)
  assert (np.abs(freq - p) <= 5 * sigma + 1e-12).all(), (freq, p)


def test_negatives_of_one_anchor_are_distinct_and_fallback_is_uniform():
  # three copies per instance: two positives per anchor, so two negatives each, without replacement
  emb, ids = batch(seed=2, n_inst=3, dim=16, spread=0.2)
  log_p = jax.jit(losses.negative_log_probs)(jnp.asarray(emb), jnp.asarray(ids))
  pos = losses.positive_mask(jnp.asarray(ids))
  sample = jax.jit(jax.vmap(functools.partial(losses.sample_negatives, log_probs=log_p, pos_mask=pos)))
  negs = np.asarray(sample(jax.random.split(jax.random.PRNGKey(1), 200)))
  for i in range(len(ids)):
    js = [j for j in range(len(ids)) if j != i and ids[j] == ids[i]]
    support = np.isfinite(np.asarray(log_p[i])).sum()
    assert (ids[negs[:, i, js]] != ids[i]).all()
    if support >= 2:
      assert (negs[:, i, js[0]] != negs[:, i, js[1]]).all()
  # all negatives beyond 1.4 (orthogonal one-hot embeddings are sqrt(2) apart): uniform fallback
  emb = np.eye(6, dtype=np.float32)
  ids = np.array([0, 0, 1, 2, 3, 4])
  p = np.exp(np.asarray(jax.jit(losses.negative_log_probs)(jnp.asarray(emb), jnp.asarray(ids))))
  np.testing.assert_allclose(p[0], [0, 0, .25, .25, .25, .25], atol=1e-6)
  # one possible negative for two positives: both pairs get it
  ids = np.array([0, 0, 0, 1, 1, 1])
  log_p = jax.jit(losses.negative_log_probs)(jnp.asarray(unit(emb + 1.0)), jnp.asarray(ids))
  log_p = log_p.at[0, 4:].set(-jnp.inf)
  negs = np.asarray(jax.jit(losses.sample_negatives)(jax.random.PRNGKey(0), log_p,
                                                     losses.positive_mask(jnp.asarray(ids))))
  assert negs[0, 1] == negs[0, 2] == 3
