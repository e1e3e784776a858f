"""ResNet-50 (torchvision layout): the trunk of MultiGrain.

Paper: Deep Residual Learning for Image Recognition (He et al., CVPR 2016), arXiv:1512.03385.
Reference: ``torchvision.models.resnet50`` (v1.5: stride on the 3x3 conv), whose parameter
names the conversion rules produce (``conv1``/``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.1``,
``fc``). Flax names: ``stem``, ``layer{i}_{k}`` with ``conv1..3``/``downsample``, ``fc``.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ghostnets_jax.convert.rules import TorchRules, register_torch_rules
from ghostnets_jax.layers import ConvBN, check_images, global_avg_pool
from ghostnets_jax.registry import register_model


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (stride) -> 1x1 (x4) + shortcut (1x1 strided ConvBN where the shape changes)."""
  width: int
  strides: int = 1
  expansion: int = 4
  zero_init_last: bool = False
  deploy: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    kw = dict(deploy=self.deploy, dtype=self.dtype)
    out_chs = self.width * self.expansion
    y = ConvBN(self.width, 1, act='relu', name='conv1', **kw)(x, train)
    y = ConvBN(self.width, 3, self.strides, act='relu', name='conv2', **kw)(y, train)
    last_init = nn.initializers.zeros if self.zero_init_last else nn.initializers.ones
    y = ConvBN(out_chs, 1, bn_scale_init=last_init, name='conv3', **kw)(y, train)
    if x.shape[-1] != out_chs or self.strides != 1:
      x = ConvBN(out_chs, 1, self.strides, name='downsample', **kw)(x, train)
    return nn.relu(y + x)


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """``nn.MaxPool2d(3, 2, padding=1)`` (padding never wins the max)."""
  return nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))


class ResNet(nn.Module):
  """Bottleneck ResNet on NHWC images (torchvision layout).

  Attributes:
    depths: bottlenecks per stage ((3, 4, 6, 3) for ResNet-50).
    num_classes: classifier size; 0 returns the pooled 2048-d features.
    global_pool: 'avg', or '' to return the final feature map (NHWC) without pooling or head
      (the trunk of MultiGrain).
    zero_init_last: start each residual branch's last BN scale at 0 (torchvision's
      ``zero_init_residual``).
  """
  depths: Sequence[int] = (3, 4, 6, 3)
  num_classes: int = 1000
  in_chans: int = 3
  drop_rate: float = 0.0
  global_pool: str = 'avg'
  zero_init_last: bool = False
  deploy: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    check_images(x, self.in_chans, type(self).__name__)
    if self.global_pool not in ('avg', ''):
      raise ValueError(f"global_pool must be 'avg' or '' (no pooling), got {self.global_pool!r}.")
    kw = dict(deploy=self.deploy, dtype=self.dtype)
    if self.dtype is not None:
      x = x.astype(self.dtype)
    x = ConvBN(64, 7, 2, act='relu', name='stem', **kw)(x, train)
    x = max_pool_3x3_s2(x)
    for i, n in enumerate(self.depths):
      for j in range(n):
        x = Bottleneck(64 * 2 ** i, 2 if i > 0 and j == 0 else 1,
                       zero_init_last=self.zero_init_last, name=f'layer{i + 1}_{j}', **kw)(x, train)
    if not self.global_pool:
      return x
    x = global_avg_pool(x)
    if self.num_classes <= 0:
      return x.astype(jnp.float32)
    x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
    return nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x).astype(jnp.float32)


RESNET_TORCH_RULES = register_torch_rules('resnet', TorchRules(rules=[
    (r'^stem\.conv\.', 'conv1.'), (r'^stem\.bn\.', 'bn1.'),
    (r'^layer(\d)_(\d+)\.', r'layer\1.\2.'),
    (r'\.conv(\d)\.conv\.', r'.conv\1.'), (r'\.conv(\d)\.bn\.', r'.bn\1.'),
    (r'\.downsample\.conv\.', '.downsample.0.'), (r'\.downsample\.bn\.', '.downsample.1.'),
], head_key='fc.weight'))


@register_model('resnet', top1=76.13, top1_source='torchvision ResNet50_Weights.IMAGENET1K_V1',
                paper='Deep Residual Learning for Image Recognition (CVPR 2016)',
                paper_url='https://arxiv.org/abs/1512.03385', interpolation='bilinear',
                reference='torchvision:resnet50')
def resnet50(**kwargs: Any) -> ResNet:
  return ResNet(depths=(3, 4, 6, 3), **kwargs)
