"""RepGhostNet: the GhostNet backbone with RepGhost modules.

Paper: RepGhost: A Hardware-Efficient Ghost Module via Re-parameterization (Chen et al., 2022),
arXiv:2211.06088. Official code: https://github.com/ChengpengChen/RepGhost; timm's
``repghostnet_*`` (our parity reference) uses the official parameter names.

A RepGhost module reuses features by addition instead of concatenation: the primary 1x1 ConvBN
makes all output channels, and a depthwise ConvBN plus an identity BatchNorm of the same maps
are summed (:class:`ghostnets_jax.layers.RepGhostModule`). ``ghostnets_jax.reparameterize``
merges the two into one depthwise conv and folds every other BN.

Checkpoints: the train form (``cheap_operation.{0,1}``, ``fusion_bn.0``) loads with
``from_torch(name, sd)``; the official ``convert_to_deploy()`` / timm ``reparameterize_model``
form (``cheap_operation.{weight,bias}``, no ``fusion_bn``, other BNs kept) loads with
``from_torch(name, sd, deploy=True)`` and comes back fully fused.

Size convention of the RepGhost README table (params 2.3 ... 9.8 M, FLOPs 43 ... 516 M):
FLOPs are multiply-accumulates of conv and linear layers only (no BN, bias or elementwise
ops); ``model_info(name, deploy=True)['macs']`` reproduces them for every width. The params
column comes from the official ``tools.cal_flops_params`` (thop's ``profile_origin``), which
sums the parameters of *every* leaf module, BatchNorm included; so, despite the README's
"without BN", it counts BN: the train form (``model_info(name)['params']``) and the official
deploy form (fused cheap ops with their conv biases, all other BNs kept) both round to the table
for every width. Our deploy form folds every BN into a conv bias (one parameter per channel
instead of two), so ``model_info(name, deploy=True)['params']`` is about 0.5% smaller: it
rounds to the table for every width but 1.5x (6.54 M; table 6.6 M).
"""
from __future__ import annotations

from typing import Any

from ghostnets_jax.layers import make_divisible
from ghostnets_jax.models.ghostnet import GhostNet, drop_thop_keys, ghost_backbone_rules
from ghostnets_jax.registry import TorchRules, register_model

# (kernel, expansion, out channels, SE ratio, stride) per block; one list per stage.
REPGHOST_CFGS = (
    ((3, 8, 16, 0, 1),),
    ((3, 24, 24, 0, 2),),
    ((3, 36, 24, 0, 1),),
    ((5, 36, 40, 0.25, 2),),
    ((5, 60, 40, 0.25, 1),),
    ((3, 120, 80, 0, 2),),
    ((3, 100, 80, 0, 1), (3, 120, 80, 0, 1), (3, 120, 80, 0, 1), (3, 240, 112, 0.25, 1),
     (3, 336, 112, 0.25, 1)),
    ((5, 336, 160, 0.25, 2),),
    ((5, 480, 160, 0, 1), (5, 480, 160, 0.25, 1), (5, 480, 160, 0, 1), (5, 480, 160, 0.25, 1)),
)


class RepGhostNet(GhostNet):
  """RepGhostNet classifier on NHWC images: :class:`GhostNet` with RepGhost bottlenecks.

  Differences from GhostNet: RepGhost modules in every bottleneck (``version`` is not used),
  half the expansion widths (``REPGHOST_CFGS``), and a final 1x1 ConvBN twice as wide.
  ``deploy=True`` is the re-parameterized form (see ``ghostnets_jax.reparameterize``).
  """
  cfgs: tuple = REPGHOST_CFGS

  def block_options(self, idx: int) -> dict:
    return dict(mode='rep')

  def final_chs(self) -> int:
    return make_divisible(self.cfgs[-1][-1][1] * self.width * 2, 4)


REPGHOST_TORCH_RULES = TorchRules(rules=ghost_backbone_rules(
    (r'\.cheap_operation\.conv_kxk_0\.conv\.', '.cheap_operation.0.'),
    (r'\.cheap_operation\.conv_kxk_0\.bn\.', '.cheap_operation.1.'),
    (r'\.cheap_operation\.identity\.', '.fusion_bn.0.'),
    (r'\.cheap_operation\.conv\.', '.cheap_operation.'),  # deploy form: one biased conv
), filter=drop_thop_keys)


def _create(width: float, **kwargs: Any) -> RepGhostNet:
  return RepGhostNet(width=width, **kwargs)


_PAPER = dict(paper='RepGhost: A Hardware-Efficient Ghost Module via Re-parameterization (2022)',
              paper_url='https://arxiv.org/abs/2211.06088',
              top1_source='RepGhost README (ChengpengChen/RepGhost), results table',
              torch_rules=REPGHOST_TORCH_RULES)


@register_model('repghost', top1=66.9, reference='timm:repghostnet_050', **_PAPER)
def repghostnet_050(**kwargs: Any) -> RepGhostNet:
  return _create(0.5, **kwargs)


@register_model('repghost', top1=68.9, reference='timm:repghostnet_058', **_PAPER)
def repghostnet_058(**kwargs: Any) -> RepGhostNet:
  return _create(0.58, **kwargs)


@register_model('repghost', top1=72.2, reference='timm:repghostnet_080', **_PAPER)
def repghostnet_080(**kwargs: Any) -> RepGhostNet:
  return _create(0.8, **kwargs)


@register_model('repghost', top1=74.2, reference='timm:repghostnet_100', **_PAPER)
def repghostnet_100(**kwargs: Any) -> RepGhostNet:
  return _create(1.0, **kwargs)


@register_model('repghost', top1=75.1, reference='timm:repghostnet_111', **_PAPER)
def repghostnet_111(**kwargs: Any) -> RepGhostNet:
  return _create(1.11, **kwargs)


@register_model('repghost', top1=76.4, reference='timm:repghostnet_130', **_PAPER)
def repghostnet_130(**kwargs: Any) -> RepGhostNet:
  return _create(1.3, **kwargs)


@register_model('repghost', top1=77.5, reference='timm:repghostnet_150', **_PAPER)
def repghostnet_150(**kwargs: Any) -> RepGhostNet:
  return _create(1.5, **kwargs)


@register_model('repghost', top1=78.8, reference='timm:repghostnet_200', **_PAPER)
def repghostnet_200(**kwargs: Any) -> RepGhostNet:
  return _create(2.0, **kwargs)
