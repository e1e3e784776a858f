"""MultiGrain: one embedding for classes and instances (classification + retrieval).

Paper: MultiGrain: a unified image embedding for classes and instances (Berman et al., 2019),
arXiv:1902.05509. Official code: https://github.com/facebookresearch/multigrain.

A classification trunk whose global pooling is GeM (exponent ``p``, 3 by default, fixed or
learned); the pooled vector is both the classifier's input and, L2-normalised, the retrieval
embedding. Training mixes cross-entropy and a margin loss on repeated augmentations
(``ghostnets_jax.losses.multigrain_loss``, ``ghostnets_jax.data.sampler``). Parameter names follow
the official checkpoints: ``features.<torchvision trunk>``, ``pool.p``, ``classifier``.
"""
from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ghostnets_jax.layers import GeM, check_images, l2_normalize
from ghostnets_jax.models.backbone import Backbone
from ghostnets_jax.models.resnet import RESNET_TORCH_RULES  # (also registers the default trunk)
from ghostnets_jax.registry import MindSporeRules, TorchRules, get_spec, register_model


class MultiGrain(Backbone):
  """Trunk -> GeM -> (embedding, classifier).

  ``apply(v, x)`` gives the logits, ``apply(v, x, method='embed')`` the L2-normalised
  embeddings and ``apply(v, x, method='outputs')`` a dict with ``logits``, ``embedding`` (GeM
  output, float32) and ``normalized_embedding`` from one forward pass (use it to train);
  ``method='features'`` the trunk's multi-scale maps (``feature_strides`` and ``output_stride``
  are passed to the trunk; a dilated trunk also feeds the embedding).

  Attributes:
    backbone: registered trunk; it is built with ``num_classes=0, global_pool=''`` and must
      return its final NHWC feature map then.
    backbone_kwargs: more fields of the trunk as ``((name, value), ...)``, e.g. a shallower
      ``(('depths', (1, 1, 1, 1)),)`` for CPU demos and tests.
    p, learn_p, gem_eps: GeM exponent, whether it is a parameter, input clamp.
    num_classes: 0 makes ``__call__`` return the normalised embedding.
    drop_rate: dropout before the classifier (0 in the paper).
  """
  backbone: str = 'resnet50'
  backbone_kwargs: tuple = ()
  num_classes: int = 1000
  in_chans: int = 3
  p: float = 3.0
  learn_p: bool = False
  gem_eps: float = 1e-6
  drop_rate: float = 0.0
  deploy: bool = False
  dtype: Any = None

  def setup(self) -> None:
    try:
      # held as ``trunk``, stored as ``features`` (the official checkpoints' name)
      self.trunk = get_spec(self.backbone).builder(
          num_classes=0, global_pool='', in_chans=self.in_chans, deploy=self.deploy,
          dtype=self.dtype, feature_strides=self.feature_strides, output_stride=self.output_stride,
          name='features', **dict(self.backbone_kwargs))
    except (TypeError, ValueError) as e:
      raise ValueError(f"MultiGrain backbone {self.backbone!r} cannot serve as a trunk: it must "
                       f"be a registered model that takes global_pool='' (return the feature "
                       f"map), e.g. 'resnet50'. ({e})") from e
    self.pool = GeM(self.p, self.learn_p, self.gem_eps)
    self.dropout = nn.Dropout(self.drop_rate)
    self.classifier = nn.Dense(self.num_classes, dtype=self.dtype)

  def _embedding(self, x: jax.Array, train: bool) -> jax.Array:
    check_images(x, self.in_chans, type(self).__name__)
    return self.pool(self.trunk(x, train))

  def _logits(self, embedding: jax.Array, train: bool) -> jax.Array:
    h = self.dropout(embedding, deterministic=not train)
    return self.classifier(h).astype(jnp.float32)

  def outputs(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    emb = self._embedding(x, train)
    out = {'embedding': emb, 'normalized_embedding': l2_normalize(emb)}
    if self.num_classes > 0:
      out['logits'] = self._logits(emb, train)
    return out

  def features(self, x: jax.Array, train: bool = False) -> dict[int, jax.Array]:
    check_images(x, self.in_chans, type(self).__name__)
    return self.trunk.features(x, train)

  def embed(self, x: jax.Array, train: bool = False) -> jax.Array:
    return l2_normalize(self._embedding(x, train))

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    emb = self._embedding(x, train)
    return self._logits(emb, train) if self.num_classes > 0 else l2_normalize(emb)


def _trunk_key(m: re.Match) -> str:
  """``features.<flax trunk path>`` -> ``features.<torchvision key>`` with the ResNet family rules."""
  name = m.group(1)
  for pattern, repl in RESNET_TORCH_RULES.rules:
    name = re.sub(pattern, repl, name)
  return f'features.{name}'


MULTIGRAIN_TORCH_RULES = TorchRules(rules=[(r'^features\.(.*)$', _trunk_key)])

# MindSpore MultiGrain on ResNet-50 (MCH1997/multigrain ``src/resnet.py``, Ascend/GPU, THOR):
# the MindSpore model zoo ResNet's cells, ``conv1``/``bn1``, ``layerN.K.conv1..3``/``bn1..3``,
# ``down_sample_layer.0/1`` for the projection, the classifier ``end_point``; GeM's p is a float.
MULTIGRAIN_MINDSPORE_RULES = MindSporeRules('model_zoo', TorchRules(rules=[
    *MULTIGRAIN_TORCH_RULES.rules,
    (r'^features\.', ''), (r'\.downsample\.', '.down_sample_layer.'),
    (r'^classifier\.', 'end_point.'),
], head_key='end_point.weight'), 'MCH1997/multigrain, src/resnet.py')


@register_model('multigrain', top1=77.4,
                top1_source='official MultiGrain README (lambda 0.5, p 3, full augmentation, 224)',
                paper='MultiGrain: a unified image embedding for classes and instances (2019)',
                paper_url='https://arxiv.org/abs/1902.05509', interpolation='bilinear',
                torch_rules=MULTIGRAIN_TORCH_RULES, mindspore_rules=(MULTIGRAIN_MINDSPORE_RULES,))
def multigrain_resnet50(**kwargs: Any) -> MultiGrain:
  return MultiGrain(backbone='resnet50', **kwargs)
