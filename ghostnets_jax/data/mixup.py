"""Mixup and CutMix on device: pure JAX, for use inside the jitted train step (timm's `Mixup`).

Entry point for the trainer:

  cfg = MixupConfig(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)   # static (hashable)
  images, targets = mixup_cutmix(rng, images, labels_onehot, cfg)          # inside jax.jit
  loss = optax.softmax_cross_entropy(logits, targets).mean()

`labels_onehot` is (B, K) one-hot (or already soft); label smoothing is folded into the targets
(`y * (1 - s) + s / K`, timm's on/off values), so do not smooth again in the loss. With
`cfg.enabled` False (both alphas 0) only the smoothing happens. Smoothing is off unless
`label_smoothing` is set (the recipe's value belongs to the config).

Semantics follow timm: each image i is paired with image B-1-i (`pairing='flip'`; `'roll'` pairs
it with i-1 instead); with probability `prob` (per batch in mode 'batch', per image in 'elem',
per pair in 'pair') the pair is mixed: CutMix with probability `switch_prob` when both alphas
are on, else Mixup; lambda ~ Beta(alpha, alpha). CutMix pastes the partner's box of side
`sqrt(1 - lambda)` times the image side, centred uniformly and clipped at the border, and
lambda is corrected to 1 - box area / image area (`correct_lam`), or the box is drawn from
`cutmix_minmax` ratios. The targets are `lam * y + (1 - lam) * y_partner` with the corrected lam.

The two halves are public for tests and custom loops: `sample_params(rng, batch, h, w, cfg)`
draws a `MixParams` (per-image lam, cutmix flag, box), `apply_params(images, labels, params, cfg)`
mixes. The whole thing costs a few elementwise ops on the batch and no host time.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ['MixupConfig', 'MixParams', 'cutmix_box', 'sample_params',
           'apply_params', 'mixup_cutmix']

_MODES = ('batch', 'pair', 'elem')
_PAIRINGS = ('flip', 'roll')


@dataclasses.dataclass(frozen=True)
class MixupConfig:
  """timm's `Mixup(...)` arguments (`--mixup --cutmix --cutmix-minmax --mixup-prob
  --mixup-switch-prob --mixup-mode --smoothing`). Hashable: pass it as a static argument."""
  mixup_alpha: float = 1.
  cutmix_alpha: float = 0.
  cutmix_minmax: tuple[float, float] | None = None
  prob: float = 1.
  switch_prob: float = 0.5
  mode: str = 'batch'
  correct_lam: bool = True
  label_smoothing: float = 0.
  pairing: str = 'flip'

  def __post_init__(self):
    if self.cutmix_minmax is not None:
      if len(self.cutmix_minmax) != 2 or not 0. <= self.cutmix_minmax[0] < self.cutmix_minmax[1] <= 1.:
        raise ValueError(f'cutmix_minmax must be (min, max) ratios with 0 <= min < max <= 1, got '
                         f'{self.cutmix_minmax}')
      object.__setattr__(self, 'cutmix_minmax', tuple(float(v) for v in self.cutmix_minmax))
      object.__setattr__(self, 'cutmix_alpha', 1.)   # as timm: minmax boxes imply CutMix on
    if self.mode not in _MODES:
      raise ValueError(f'mode must be one of {_MODES}, got {self.mode!r}')
    if self.pairing not in _PAIRINGS:
      raise ValueError(f'pairing must be one of {_PAIRINGS}, got {self.pairing!r}')
    if self.mode == 'pair' and self.pairing != 'flip':
      raise ValueError("mode='pair' mixes i with B-1-i both ways; it needs pairing='flip'")
    if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
      raise ValueError(f'alphas must be >= 0, got mixup_alpha={self.mixup_alpha}, '
                       f'cutmix_alpha={self.cutmix_alpha}')
    for name in ('prob', 'switch_prob', 'label_smoothing'):
      if not 0. <= getattr(self, name) <= 1.:
        raise ValueError(f'{name} must be in [0, 1], got {getattr(self, name)}')

  @property
  def enabled(self) -> bool:
    return self.mixup_alpha > 0. or self.cutmix_alpha > 0.


class MixParams(NamedTuple):
  """Per-image mixing parameters. lam: (B,) weight of the image's own content (after the CutMix
  area correction; 1 = untouched); use_cutmix: (B,) bool; box: (B, 4) int32 rows [yl, yh) and
  cols [xl, xh) taken from the partner (empty unless CutMix)."""
  lam: jax.Array
  use_cutmix: jax.Array
  box: jax.Array


def cutmix_box(rng: jax.Array, lam: jax.Array, height: int, width: int,
               minmax: tuple[float, float] | None = None, correct_lam: bool = True):
  """timm's `cutmix_bbox_and_lam` for a vector of lambdas: returns (box (B, 4) int32 [yl, yh, xl,
  xh], lam). Without `minmax` the box has sides int(H sqrt(1 - lam)), int(W sqrt(1 - lam)) around
  a uniform centre, clipped; lam becomes 1 - area / (H W) when `correct_lam` or `minmax`."""
  k_h, k_w, k_y, k_x = jax.random.split(rng, 4)
  shape = lam.shape
  if minmax is None:
    ratio = jnp.sqrt(1. - lam.astype(jnp.float32))
    cut_h = jnp.floor(height * ratio).astype(jnp.int32)
    cut_w = jnp.floor(width * ratio).astype(jnp.int32)
    cy = jax.random.randint(k_y, shape, 0, height)
    cx = jax.random.randint(k_x, shape, 0, width)
    yl = jnp.clip(cy - cut_h // 2, 0, height)
    yh = jnp.clip(cy + (cut_h + 1) // 2, 0, height)
    xl = jnp.clip(cx - cut_w // 2, 0, width)
    xh = jnp.clip(cx + (cut_w + 1) // 2, 0, width)
  else:
    lo, hi = minmax
    cut_h = jax.random.randint(k_h, shape, int(height * lo), int(height * hi))
    cut_w = jax.random.randint(k_w, shape, int(width * lo), int(width * hi))
    yl = jax.random.randint(k_y, shape, 0, height - cut_h + 1)
    xl = jax.random.randint(k_x, shape, 0, width - cut_w + 1)
    yh, xh = yl + cut_h, xl + cut_w
  box = jnp.stack([yl, yh, xl, xh], axis=-1).astype(jnp.int32)
  if correct_lam or minmax is not None:
    lam = 1. - ((yh - yl) * (xh - xl)).astype(jnp.float32) / float(height * width)
  return box, lam


def sample_params(rng: jax.Array, batch: int, height: int, width: int,
                  cfg: MixupConfig) -> MixParams:
  """Draw timm's mixing decisions for a batch: one draw for the batch ('batch'), one per pair
  ('pair', mirrored onto B-1-i) or one per image ('elem')."""
  if cfg.mode == 'pair' and batch % 2:
    raise ValueError(f"mode='pair' needs an even batch, got {batch}")
  n = {'batch': 1, 'pair': batch // 2, 'elem': batch}[cfg.mode]
  k_apply, k_switch, k_lam, k_box = jax.random.split(rng, 4)
  if not cfg.enabled:
    return MixParams(jnp.ones([batch]), jnp.zeros([batch], bool), jnp.zeros([batch, 4], jnp.int32))
  if cfg.mixup_alpha > 0. and cfg.cutmix_alpha > 0.:
    use_cutmix = jax.random.uniform(k_switch, [n]) < cfg.switch_prob
  else:
    use_cutmix = jnp.full([n], cfg.cutmix_alpha > 0.)
  # one Beta draw per (image, active alpha): a single gamma sampler to compile, not two
  alphas = jnp.asarray([a for a in (cfg.mixup_alpha, cfg.cutmix_alpha) if a > 0.], jnp.float32)
  lams = jax.random.beta(k_lam, alphas, alphas, (n, alphas.shape[0]))
  lam_mix, lam_cut = lams[:, 0], lams[:, -1]
  applied = jax.random.uniform(k_apply, [n]) < cfg.prob
  lam = jnp.where(applied, jnp.where(use_cutmix, lam_cut, lam_mix), 1.)
  use_cutmix = use_cutmix & applied
  box, lam_box = cutmix_box(k_box, lam, height, width, cfg.cutmix_minmax, cfg.correct_lam)
  lam = jnp.where(use_cutmix, lam_box, lam).astype(jnp.float32)
  box = jnp.where(use_cutmix[:, None], box, 0)
  if cfg.mode == 'batch':
    expand = lambda v: jnp.broadcast_to(v, (batch,) + v.shape[1:])
  elif cfg.mode == 'pair':
    expand = lambda v: jnp.concatenate([v, v[::-1]], axis=0)
  else:
    expand = lambda v: v
  return MixParams(expand(lam), expand(use_cutmix), expand(box))


def _partner(x: jax.Array, pairing: str) -> jax.Array:
  return x[::-1] if pairing == 'flip' else jnp.roll(x, 1, axis=0)


def apply_params(images: jax.Array, labels: jax.Array, params: MixParams,
                 cfg: MixupConfig) -> tuple[jax.Array, jax.Array]:
  """Mix `images` (B, H, W, C) and one-hot `labels` (B, K) with drawn `params`; returns the
  images (same dtype) and the smoothed, mixed float32 targets."""
  _check(images, labels)
  h, w = images.shape[1:3]
  other = _partner(images, cfg.pairing)
  lam = params.lam.astype(jnp.float32)[:, None, None, None]
  mixed = (images.astype(jnp.float32) * lam + other.astype(jnp.float32) * (1. - lam)).astype(images.dtype)
  yl, yh, xl, xh = (params.box[:, i, None, None, None] for i in range(4))
  rows = jnp.arange(h)[None, :, None, None]
  cols = jnp.arange(w)[None, None, :, None]
  in_box = (rows >= yl) & (rows < yh) & (cols >= xl) & (cols < xh)
  pasted = jnp.where(in_box, other, images)
  out = jnp.where(params.use_cutmix[:, None, None, None], pasted, mixed)
  targets = optax.smooth_labels(labels.astype(jnp.float32), cfg.label_smoothing)   # timm's on/off
  lam_y = params.lam.astype(jnp.float32)[:, None]
  targets = targets * lam_y + _partner(targets, cfg.pairing) * (1. - lam_y)
  return out, targets


def mixup_cutmix(rng: jax.Array, images: jax.Array, labels: jax.Array,
                 cfg: MixupConfig) -> tuple[jax.Array, jax.Array]:
  """(mixed images, soft targets) for one batch; pure, jittable, deterministic given `rng`."""
  _check(images, labels)
  b, h, w = images.shape[:3]
  return apply_params(images, labels, sample_params(rng, b, h, w, cfg), cfg)


def _check(images, labels):
  if images.ndim != 4:
    raise ValueError(f'images must be a (B, H, W, C) batch, got shape {images.shape}')
  if labels.ndim != 2 or labels.shape[0] != images.shape[0]:
    raise ValueError(f'labels must be one-hot (B, K) with B = {images.shape[0]}, got shape '
                     f'{labels.shape}; use jax.nn.one_hot(labels, num_classes).')
