"""On-device Mixup / CutMix (ghostnets_jax/data/mixup.py) against timm's Mixup.

timm draws with numpy; we draw with JAX. Parity is checked by feeding timm's Mixup our draws
(its numpy random calls are replaced by a queue of our values), so images, boxes, corrected
lambdas and soft targets must agree exactly. Invariants (label mass, box area) and the draw
statistics are checked on our own.
"""
from __future__ import annotations

import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import timm.data.mixup as timm_mixup

from ghostnets_jax.data.mixup import (MixParams, MixupConfig, apply_params, cutmix_box, mixup_cutmix,
                                      sample_params)

pytestmark = pytest.mark.xdist_group('mixup')

B, H, W, C, K = 8, 12, 20, 3, 10


def batch(seed=0):
  rng = np.random.RandomState(seed)
  images = rng.randn(B, H, W, C).astype(np.float32)
  labels = rng.randint(0, K, B)
  return images, labels, np.eye(K, dtype=np.float32)[labels]


@functools.lru_cache(maxsize=None)
def jitted(cfg: MixupConfig):
  """(params, (images, targets)) from one compiled function per config: the public entry point
  and the draws it made (XLA merges the duplicated sampling)."""
  return jax.jit(lambda key, x, y: (sample_params(key, x.shape[0], H, W, cfg),
                                    mixup_cutmix(key, x, y, cfg)))


CONFIGS = [
  MixupConfig(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1),
  MixupConfig(mixup_alpha=0.8, cutmix_alpha=1.0, mode='elem', prob=0.7, switch_prob=0.3,
              label_smoothing=0.1),
  MixupConfig(mixup_alpha=0.2, cutmix_alpha=0.0, mode='pair', label_smoothing=0.0),
  MixupConfig(mixup_alpha=0.0, cutmix_minmax=(0.2, 0.8), mode='elem', pairing='roll'),
]


@pytest.mark.parametrize('cfg', CONFIGS, ids=lambda c: f'{c.mode}-{c.mixup_alpha}-{c.cutmix_alpha}')
def test_mass_and_combination(cfg):
  """Soft targets sum to one and are the lam-weighted smoothed labels; every image is exactly
  the lam-weighted blend (Mixup) or the partner's box pasted in (CutMix) with lam = 1 - box
  area; deterministic in the key."""
  images, _, onehot = batch()
  partner = (lambda x: x[::-1]) if cfg.pairing == 'flip' else (lambda x: np.roll(x, 1, axis=0))
  for seed in range(6):
    key = jax.random.PRNGKey(seed)
    params, (out, targets) = jitted(cfg)(key, images, onehot)
    out, targets = np.asarray(out), np.asarray(targets)
    np.testing.assert_allclose(targets.sum(-1), 1., atol=1e-6)
    lam, use_cutmix, box = (np.asarray(p) for p in params)
    smooth = onehot * (1 - cfg.label_smoothing) + cfg.label_smoothing / K   # timm's on/off values
    np.testing.assert_allclose(targets, lam[:, None] * smooth + (1 - lam[:, None]) * partner(smooth),
                               atol=1e-6)
    other = partner(images)
    for i in range(B):
      if use_cutmix[i]:
        yl, yh, xl, xh = box[i]
        assert lam[i] == pytest.approx(1 - (yh - yl) * (xh - xl) / (H * W), abs=1e-6)
        inside = np.zeros((H, W), bool)
        inside[yl:yh, xl:xh] = True
        np.testing.assert_array_equal(out[i][inside], other[i][inside])
        np.testing.assert_array_equal(out[i][~inside], images[i][~inside])
      else:
        np.testing.assert_allclose(out[i], lam[i] * images[i] + (1 - lam[i]) * other[i], atol=1e-6)
    again = jitted(cfg)(key, images, onehot)[1][0]
    np.testing.assert_array_equal(np.asarray(again), out)
  if cfg.mode == 'pair':
    np.testing.assert_array_equal(lam, lam[::-1])


class _Queue:
  """Stands in for numpy.random inside timm.data.mixup: returns our draws in timm's call order."""

  def __init__(self, values):
    self.values = list(values)

  def _next(self, size=None):
    v = self.values.pop(0)
    return v if size is None else np.asarray(v)

  rand = beta = randint = lambda self, *args, size=None, **kw: self._next(size)


def test_batch_mode_equals_timm(monkeypatch):
  """Mode 'batch', both alphas on: for each key our output equals timm's Mixup fed our draws
  (apply, switch, lambda, box centre) — images, corrected lambda and targets."""
  cfg = MixupConfig(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)
  images, labels, onehot = batch(1)
  seen = set()
  for seed in range(12):
    key = jax.random.PRNGKey(100 + seed)
    k_apply, k_switch, k_lam, k_box = jax.random.split(key, 4)
    applied = float(jax.random.uniform(k_apply, [1])[0])
    switch = float(jax.random.uniform(k_switch, [1])[0])
    use_cutmix = switch < cfg.switch_prob
    alphas = jnp.asarray([.8, 1.])
    lam_raw = float(jax.random.beta(k_lam, alphas, alphas, (1, 2))[0, int(use_cutmix)])
    _, _, k_y, k_x = jax.random.split(k_box, 4)
    cy = int(jax.random.randint(k_y, [1], 0, H)[0])
    cx = int(jax.random.randint(k_x, [1], 0, W)[0])
    fake = _Queue([applied, switch, lam_raw, cy, cx])
    monkeypatch.setattr(timm_mixup, 'np', types.SimpleNamespace(random=fake, sqrt=np.sqrt,
                                                                clip=np.clip))
    mixer = timm_mixup.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=K)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    ref_x, ref_y = mixer(x, torch.from_numpy(labels))
    _, (out, targets) = jitted(cfg)(key, images, onehot)
    np.testing.assert_allclose(np.asarray(out), ref_x.numpy().transpose(0, 2, 3, 1), atol=1e-6)
    np.testing.assert_allclose(np.asarray(targets), ref_y.numpy(), atol=1e-6)
    seen.add(use_cutmix)
  assert seen == {True, False}


@pytest.mark.parametrize('lam', [0.0, 0.13, 0.5, 0.77, 0.999, 1.0])
def test_cutmix_box_equals_timm(lam, monkeypatch):
  """Box corners and corrected lambda equal timm's cutmix_bbox_and_lam for the same centre,
  including boxes clipped at every border."""
  for cy, cx in [(0, 0), (H - 1, W - 1), (H // 2, 3), (5, W // 2)]:
    fake = _Queue([cy, cx])
    monkeypatch.setattr(timm_mixup, 'np', types.SimpleNamespace(random=fake, sqrt=np.sqrt,
                                                                clip=np.clip))
    (yl, yh, xl, xh), ref_lam = timm_mixup.cutmix_bbox_and_lam((B, C, H, W), lam)
    key = jax.random.PRNGKey(0)
    ours_box, ours_lam = _box_at(key, lam, cy, cx)
    assert tuple(ours_box) == (yl, yh, xl, xh)
    assert float(ours_lam) == pytest.approx(ref_lam, abs=1e-6)


def _box_at(key, lam, cy, cx):
  """cutmix_box with its centre draws replaced by (cy, cx)."""
  k_h, k_w, k_y, k_x = jax.random.split(key, 4)
  saved = jax.random.randint
  draws = iter([cy, cx])
  try:
    jax.random.randint = lambda k, shape, lo, hi: jnp.full(shape, next(draws))
    box, out_lam = cutmix_box(key, jnp.asarray([lam], jnp.float32), H, W)
  finally:
    jax.random.randint = saved
  return np.asarray(box[0]), out_lam[0]


def test_draw_statistics():
  """Over 4000 draws: apply rate = prob, CutMix share = prob * switch_prob, mean Mixup lam = 0.5;
  minmax boxes within their ratio bounds (same compiled functions as above)."""
  images, _, onehot = batch()
  draws = [jitted(CONFIGS[1])(jax.random.PRNGKey(1000 + i), images, onehot)[0] for i in range(500)]
  lam = np.concatenate([np.asarray(d.lam) for d in draws])
  use_cutmix = np.concatenate([np.asarray(d.use_cutmix) for d in draws])
  mixed = lam < 1.
  assert abs(mixed.mean() - 0.7) < 0.03
  assert abs(use_cutmix.mean() - 0.7 * 0.3) < 0.03
  assert abs(lam[mixed & ~use_cutmix].mean() - 0.5) < 0.03
  boxes = [jitted(CONFIGS[3])(jax.random.PRNGKey(i), images, onehot)[0] for i in range(100)]
  box = np.concatenate([np.asarray(d.box) for d in boxes])
  assert np.concatenate([np.asarray(d.use_cutmix) for d in boxes]).all()
  hh, ww = box[:, 1] - box[:, 0], box[:, 3] - box[:, 2]
  assert hh.min() >= int(H * .2) and hh.max() < int(H * .8)
  assert ww.min() >= int(W * .2) and ww.max() < int(W * .8)
  assert box[:, 1].max() <= H and box[:, 3].max() <= W


def test_disabled_only_smooths_and_bad_input():
  images, _, onehot = batch()
  cfg = MixupConfig(mixup_alpha=0., cutmix_alpha=0., label_smoothing=0.2)
  out, targets = mixup_cutmix(jax.random.PRNGKey(0), images, onehot, cfg)
  np.testing.assert_array_equal(np.asarray(out), images)
  np.testing.assert_allclose(np.asarray(targets), onehot * 0.8 + 0.02, atol=1e-7)
  with pytest.raises(ValueError, match='one_hot'):
    mixup_cutmix(jax.random.PRNGKey(0), images, np.arange(B), cfg)
  with pytest.raises(ValueError, match='mode'):
    MixupConfig(mode='bogus')
  with pytest.raises(ValueError, match='pairing'):
    MixupConfig(mode='pair', pairing='roll')
  with pytest.raises(ValueError, match='even'):
    sample_params(jax.random.PRNGKey(0), 7, H, W, MixupConfig(mode='pair'))
  params = MixParams(jnp.full([B], 0.25), jnp.zeros([B], bool), jnp.zeros([B, 4], jnp.int32))
  bf16, _ = apply_params(jnp.asarray(images, jnp.bfloat16), onehot, params, CONFIGS[0])
  assert bf16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(bf16, np.float32), 0.25 * images + 0.75 * images[::-1],
                             atol=0.05)
