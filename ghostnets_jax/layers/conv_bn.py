"""Conv + BatchNorm (+ activation), the unit that ``reparameterize`` folds into one conv."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax

from ghostnets_jax.layers.activations import get_act
from ghostnets_jax.layers.conv import Conv2d, IntPair, Parts
from ghostnets_jax.layers.norm import BatchNorm


class ConvBN(nn.Module):
  """``act(bn(conv(x)))``; with ``deploy=True`` a single biased conv (BN folded).

  Variables: ``conv/kernel``, ``bn/{scale,bias}``, batch_stats ``bn/{mean,var}``;
  deploy form: ``conv/{kernel,bias}``.
  """
  features: int
  kernel_size: IntPair = 1
  strides: IntPair = 1
  groups: int = 1
  dilation: IntPair = 1
  padding: Optional[Sequence[tuple[int, int]]] = None
  act: Optional[str] = None
  deploy: bool = False
  bn_scale_init: Any = nn.initializers.ones
  dtype: Any = None

  @nn.compact
  def __call__(self, x: Parts, train: bool = False) -> jax.Array:
    x = Conv2d(self.features, self.kernel_size, self.strides, self.padding, self.dilation,
               self.groups, use_bias=self.deploy, dtype=self.dtype, name='conv')(x)
    if not self.deploy:
      x = BatchNorm(use_running_average=not train, scale_init=self.bn_scale_init,
                    dtype=self.dtype, name='bn')(x)
    return get_act(self.act)(x)
