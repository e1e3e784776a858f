"""The backbone API shared by every classifier: multi-scale features and dilated output strides.

Every registered model is a :class:`Backbone`::

  model = gj.create_model('ghostnet_100', feature_strides=(8, 16, 32), output_stride=16)
  feats = model.apply(variables, x, train=False, method='features')   # {8: ..., 16: ..., 32: ...}

Feature levels are keyed by their *nominal* stride in the classifier network, 2, 4, 8, 16 and
32; the map of level ``s`` is the output of the **last** layer that runs at stride ``s`` (the end
of a stage: the richest map at that resolution; for GhostNets the level-32 map is the final 1x1
ConvBN). timm's GhostNet ``features_only`` instead taps the first block at each new stride.

``output_stride`` (8, 16 or 32) trades the strides beyond it for dilation, as torchvision's
``replace_stride_with_dilation`` and DeepLab: the block that would stride keeps its structure
and parameters (same pytree: a classifier checkpoint loads unchanged), its convolutions run
with stride 1 and the layers after its stride point dilate by the stride they lost. A map of
level ``s`` then has stride ``min(s, output_stride)``: with ``output_stride=16`` the level-32
map is 1/16 of the input. Padding stays PyTorch's symmetric ``dilation * (k - 1) // 2``.

A model implements ``forward(x, train, features_only)`` (its one ``@nn.compact`` method) with a
:class:`StridePlan`: ``plan.downsample(s)`` at each layer that would stride by ``s`` (1 for the
others) gives that layer's dilation and whether it trades its stride; ``plan.record(x)`` after
each layer keeps the last map per level.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ghostnets_jax.layers.conv import conv_kernels

FEATURE_STRIDES = (2, 4, 8, 16, 32)
OUTPUT_STRIDES = (8, 16, 32)


class StridePlan:
  """Walks a network's downsampling points while it is built (plain Python, trace time only).

  Attributes:
    stride: nominal stride of the current map (its feature level).
    dilation: dilation of the layers that follow the last downsampling point.
  """

  def __init__(self, output_stride: int, feature_strides: Sequence[int]):
    self.output_stride = output_stride
    self.feature_strides = tuple(feature_strides)
    self.stride = 1
    self.dilation = 1
    self._actual = 1
    self._maps: dict[int, jax.Array] = {}

  def downsample(self, stride: int) -> tuple[int, bool]:
    """Enters a layer (block) that strides by ``stride`` in the classifier.

    Returns ``(dilation, dilate)``: the dilation of the layer's convolutions up to and including
    its stride point, and whether it trades the stride for dilation (then its convolutions use
    stride 1 and the layers after the stride point ``dilation * stride``, the new
    :attr:`dilation`).
    """
    first = self.dilation
    self.stride *= stride
    if self._actual * stride > self.output_stride:
      self.dilation *= stride
      return first, True
    self._actual *= stride
    return first, False

  def record(self, x: jax.Array) -> jax.Array:
    """Keeps ``x`` as the current candidate for its level (a later layer at the level replaces it)."""
    self._maps[self.stride] = x
    return x

  def features(self) -> dict[int, jax.Array]:
    missing = [s for s in self.feature_strides if s not in self._maps]
    if missing:
      raise ValueError(f'no feature map at stride(s) {missing}; this network has levels '
                       f'{sorted(self._maps)}.')
    return {s: self._maps[s] for s in self.feature_strides}


def _kw_field(default: Any) -> Any:
  # keyword-only, so the model classes keep their positional fields
  return dataclasses.field(default=default, kw_only=True)


class Backbone(nn.Module):
  """Base of the registered classifiers: ``__call__`` (logits) and ``features`` (multi-scale maps).

  Attributes:
    feature_strides: levels ``features`` returns, a subset of (2, 4, 8, 16, 32).
    output_stride: 32 (the classifier), 16 or 8: later stages dilate instead of striding.
  Subclasses implement ``forward(x, train=False, features_only=False)``.
  """
  feature_strides: Sequence[int] = _kw_field(FEATURE_STRIDES)
  output_stride: int = _kw_field(32)

  def stride_plan(self) -> StridePlan:
    """A fresh :class:`StridePlan` after checking ``output_stride`` and ``feature_strides``."""
    name = type(self).__name__
    if self.output_stride not in OUTPUT_STRIDES:
      raise ValueError(f'{name}: output_stride must be one of {OUTPUT_STRIDES}, got '
                       f'{self.output_stride!r} (16 or 8 dilate the last stages).')
    bad = [s for s in self.feature_strides if s not in FEATURE_STRIDES]
    if bad or not self.feature_strides:
      raise ValueError(f'{name}: feature_strides must be a non-empty subset of '
                       f'{FEATURE_STRIDES}, got {tuple(self.feature_strides)!r}.')
    return StridePlan(self.output_stride, self.feature_strides)

  def forward(self, x: jax.Array, train: bool = False, features_only: bool = False) -> Any:
    raise NotImplementedError

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    return self.forward(x, train)

  def features(self, x: jax.Array, train: bool = False) -> dict[int, jax.Array]:
    """``{stride: NHWC map}`` for each of ``feature_strides`` (no head is run or needed).

    Call as ``model.apply(variables, x, train=False, method='features')``; the classifier's
    variables serve as they are (the head's are simply unused).
    """
    return self.forward(x, train, features_only=True)


def abstract_features(model: nn.Module, input_size: int, batch: int = 1) -> tuple[dict, dict]:
  """``(features, variables)`` of ``model.features`` on a square input, as shapes (no compute)."""
  x = jax.ShapeDtypeStruct((batch, input_size, input_size, model.in_chans), jnp.float32)
  init = functools.partial(model.init_with_output, method='features', train=False)
  with conv_kernels('native'):  # shapes only: one op per conv traces faster
    return jax.eval_shape(init, jax.random.PRNGKey(0), x)


def feature_shapes(model: nn.Module, input_size: int, batch: int = 1) -> dict[int, tuple[int, ...]]:
  """``{stride: shape}`` of ``model``'s features for a ``batch x input_size x input_size`` input."""
  return {s: tuple(v.shape) for s, v in abstract_features(model, input_size, batch)[0].items()}

