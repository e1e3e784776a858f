"""C-GhostNet (GhostNet v1), GhostNetV2 and GhostNetV3.

Papers:
  * GhostNet: More Features from Cheap Operations (Han et al., CVPR 2020), arXiv:1911.11907
  * GhostNetV2: Enhance Cheap Operation with Long-Range Attention (Tang et al., NeurIPS 2022),
    arXiv:2211.12905
  * GhostNetV3: Exploring the Training Strategies for Compact Models (Liu et al., 2024),
    arXiv:2404.11202. The V2 architecture (DFC attention after the second block) trained with
    re-parameterizable branches: every primary, cheap and stride-2 depthwise conv is three
    parallel ConvBNs (+ 1x1 scale and identity-BN branches where the shapes allow); deploy
    form (``ghostnets_jax.reparameterize``) = the V2 network with biased convs.
Official code: https://github.com/huawei-noah/Efficient-AI-Backbones (ghostnet_pytorch,
ghostnetv2_pytorch, ghostnetv3_pytorch); timm's ``ghostnet_*`` / ``ghostnetv2_*`` /
``ghostnetv3_*`` use the same parameter names (official V3 files name the branch BNs ``bn``
instead of timm's ``bn1``; the converter accepts both).
"""
from __future__ import annotations

import re
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from ghostnets_jax.layers import (ConvBN, DropPath, GhostModule, GhostModuleV2, RepConvBN,
                                  RepGhostModule, SqueezeExcite, check_images, get_act,
                                  global_avg_pool, make_divisible)
from ghostnets_jax.models.backbone import Backbone
from ghostnets_jax.registry import MindSporeRules, TorchRules, blocks_index, register_model


class GhostBottleneck(nn.Module):
  """Ghost bottleneck: ghost (expand) -> [dw conv, stride 2] -> [SE] -> ghost (linear) + shortcut.

  ``mode``: 'original' (C-Ghost modules), 'attn' (GhostNetV2: DFC attention in the expanding
  module) or 'rep' (RepGhost modules). ``num_conv_branches > 0`` (GhostNetV3) makes the ghost
  modules' convs and the depthwise conv re-parameterizable :class:`RepConvBN` layers.
  SE width: ``make_divisible(mid_chs * se_ratio, se_divisor)`` (S-GhostNet's large mode uses 8).
  ``dilation``: of the convs up to the stride point (expanding module, depthwise conv, shortcut);
  ``dilate`` (dilated backbones): the convs keep stride 1 and the linear module after the stride
  point dilates by ``dilation * strides``; the structure stays that of ``strides``.
  """
  mid_chs: int
  out_chs: int
  dw_kernel_size: int = 3
  strides: int = 1
  se_ratio: float = 0.0
  mode: str = 'original'
  num_conv_branches: int = 0
  drop_path_rate: float = 0.0
  deploy: bool = False
  dtype: Any = None
  se_divisor: int = 4
  dilation: int = 1
  dilate: bool = False

  def ghost_module(self, features: int, act: Optional[str], name: str, expand: bool,
                   dilation: int) -> nn.Module:
    kw = dict(act=act, deploy=self.deploy, dtype=self.dtype, dilation=dilation, name=name)
    if self.mode == 'rep':
      return RepGhostModule(features, **kw)
    cls = GhostModuleV2 if self.mode == 'attn' and expand else GhostModule
    return cls(features, num_conv_branches=self.num_conv_branches, **kw)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    in_chs = x.shape[-1]
    kw = dict(deploy=self.deploy, dtype=self.dtype)
    strides = 1 if self.dilate else self.strides
    after = self.dilation * self.strides if self.dilate else self.dilation
    # Channel parts go straight into the depthwise conv (see ghostnets_jax.layers.conv).
    split = self.strides > 1 and self.mode != 'rep'
    ghost1 = self.ghost_module(self.mid_chs, 'relu', 'ghost1', True, self.dilation)
    y = ghost1(x, train, split=True) if split else ghost1(x, train)
    if self.strides > 1:
      dw = dict(groups=self.mid_chs, dilation=self.dilation, name='conv_dw', **kw)
      if self.num_conv_branches:
        y = RepConvBN(self.mid_chs, self.dw_kernel_size, strides, use_scale=True,
                      num_conv_branches=self.num_conv_branches, **dw)(y, train)
      else:
        y = ConvBN(self.mid_chs, self.dw_kernel_size, strides, **dw)(y, train)
    if self.se_ratio > 0:
      rd = make_divisible(self.mid_chs * self.se_ratio, self.se_divisor)
      y = SqueezeExcite(rd, dtype=self.dtype, name='se')(y)
    y = self.ghost_module(self.out_chs, None, 'ghost2', False, after)(y, train)
    if in_chs == self.out_chs and self.strides == 1:
      shortcut = x
    else:
      shortcut = ConvBN(in_chs, self.dw_kernel_size, strides, groups=in_chs,
                        dilation=self.dilation, name='shortcut_dw', **kw)(x, train)
      shortcut = ConvBN(self.out_chs, 1, name='shortcut_pw', **kw)(shortcut, train)
    return DropPath(self.drop_path_rate)(y, deterministic=not train) + shortcut


# (kernel, expansion, out channels, SE ratio, stride) per block; one list per stage.
GHOSTNET_CFGS = (
    ((3, 16, 16, 0, 1),),
    ((3, 48, 24, 0, 2),),
    ((3, 72, 24, 0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0, 2),),
    ((3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1),
     (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2),),
    ((5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1)),
)


class GhostNet(Backbone):
  """GhostNet v1/v2/v3 classifier on NHWC images (and the backbone of RepGhostNet, S-GhostNet).

  ``apply(v, x)``: logits; ``apply(v, x, method='features')``: ``{stride: map}`` with levels
  2 (stem + first stage), 4, 8, 16 (the last block at each stride) and 32 (the final 1x1
  ConvBN); ``feature_strides`` / ``output_stride`` (see :mod:`ghostnets_jax.models.backbone`).

  Attributes:
    width: channel multiplier (0.5, 1.0, 1.3, 1.6 in the papers), rounded to multiples of 4.
    version: 'v1' (C-Ghost modules), 'v2' (DFC attention in every block after the second) or
      'v3' (v2 with three re-parameterizable branches per conv).
    drop_rate: dropout before the classifier. drop_path_rate: stochastic depth (0 in the papers).
    num_classes: 0 returns the ``head_chs``-d pre-logits.
    stem_chs: stem width before ``width`` scaling. act: activation after the stem and the head
      ('relu'; S-GhostNet's large mode uses 'hard_swish'). se_divisor: SE width rounding.
    deploy: BN folded and branches merged (see ``ghostnets_jax.reparameterize``).
    dtype: computation dtype (e.g. ``jnp.bfloat16``); parameters stay float32.
  """
  cfgs: tuple = GHOSTNET_CFGS
  num_classes: int = 1000
  width: float = 1.0
  version: str = 'v1'
  in_chans: int = 3
  drop_rate: float = 0.2
  drop_path_rate: float = 0.0
  head_chs: int = 1280
  deploy: bool = False
  dtype: Any = None
  stem_chs: int = 16
  act: str = 'relu'
  se_divisor: int = 4

  def block_options(self, idx: int) -> dict:
    """``GhostBottleneck`` options of block ``idx`` (counted over all stages)."""
    if self.version not in ('v1', 'v2', 'v3'):
      raise ValueError(f"GhostNet version must be 'v1', 'v2' or 'v3', got {self.version!r}")
    attn = self.version in ('v2', 'v3') and idx > 1
    return dict(mode='attn' if attn else 'original',
                num_conv_branches=3 if self.version == 'v3' else 0)

  def final_chs(self) -> int:
    """Channels of the 1x1 ConvBN after the last stage."""
    return make_divisible(self.cfgs[-1][-1][1] * self.width, 4)

  @nn.compact
  def forward(self, x: jax.Array, train: bool = False, features_only: bool = False) -> Any:
    check_images(x, self.in_chans, type(self).__name__)
    plan = self.stride_plan()
    kw = dict(deploy=self.deploy, dtype=self.dtype)
    if self.dtype is not None:
      x = x.astype(self.dtype)
    plan.downsample(2)  # the stem never dilates (output_stride >= 8)
    x = plan.record(ConvBN(make_divisible(self.stem_chs * self.width, 4), 3, 2, act=self.act,
                           name='conv_stem', **kw)(x, train))
    n_blocks = sum(len(s) for s in self.cfgs)
    idx = 0
    for i, stage in enumerate(self.cfgs):
      for j, (k, exp, c, se, s) in enumerate(stage):
        dilation, dilate = plan.downsample(s)
        x = GhostBottleneck(make_divisible(exp * self.width, 4), make_divisible(c * self.width, 4),
                            k, s, se, drop_path_rate=self.drop_path_rate * idx / n_blocks,
                            se_divisor=self.se_divisor, dilation=dilation, dilate=dilate,
                            name=f'blocks_{i}_{j}', **self.block_options(idx), **kw)(x, train)
        plan.record(x)
        idx += 1
    x = plan.record(ConvBN(self.final_chs(), 1, act='relu', name=f'blocks_{len(self.cfgs)}_0',
                           **kw)(x, train))
    if features_only:
      return plan.features()
    x = global_avg_pool(x)
    x = get_act(self.act)(nn.Dense(self.head_chs, dtype=self.dtype, name='conv_head')(x))
    if self.num_classes <= 0:
      return x
    x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name='classifier')(x)
    return x.astype(jnp.float32)


def _seq(name: str, first: int = 0) -> list[tuple[str, str]]:
  """ConvBN ``name`` stored as ``nn.Sequential(conv, bn)`` at indices ``first``, ``first+1``."""
  return [(rf'(^|\.){name}\.conv\.', rf'\1{name}.{first}.'),
          (rf'(^|\.){name}\.bn\.', rf'\1{name}.{first + 1}.')]


def drop_thop_keys(sd: dict) -> dict:
  """Official checkpoints may carry thop's ``total_ops``/``total_params`` buffers."""
  return {k: v for k, v in sd.items() if not k.endswith(('total_ops', 'total_params'))}


def _official_v3_names(sd: dict) -> dict:
  """Official GhostNetV3 files name the branch BNs ``bn``; timm (our reference) ``bn1``."""
  return {re.sub(r'(_rpr_(?:conv\.\d+|scale))\.bn\.', r'\1.bn1.', k): v
          for k, v in drop_thop_keys(sd).items()}


def ghost_backbone_rules(*module_rules: tuple) -> list:
  """Torch names of the timm GhostNet-style backbone (stem, blocks, primary conv, depthwise conv,
  shortcut, final ConvBnAct); ``module_rules`` name the rest of the ghost modules."""
  return [
      blocks_index('blocks', 'blocks'),
      (r'^conv_stem\.conv\.', 'conv_stem.'), (r'^conv_stem\.bn\.', 'bn1.'),
      *module_rules, *_seq('primary_conv'),
      (r'\.conv_dw\.conv\.', '.conv_dw.'), (r'\.conv_dw\.bn\.', '.bn_dw.'),
      *_seq('shortcut_dw', 0), (r'shortcut_dw\.', 'shortcut.'),
      *_seq('shortcut_pw', 2), (r'shortcut_pw\.', 'shortcut.'),
      (r'^(blocks\.9\.0)\.bn\.', r'\1.bn1.'),
  ]


_RPR_OWNER = {'primary_conv': 'primary', 'cheap_operation': 'cheap', 'conv_dw': 'dw'}
_RPR_BRANCH = {'conv_scale': 'scale', 'identity': 'skip'}

GHOSTNET_TORCH_RULES = TorchRules(rules=ghost_backbone_rules(
    # GhostNetV3 train form: RepConvBN branches -> {primary,cheap,dw}_rpr_{conv.i,scale,skip}
    (r'\.(primary_conv|cheap_operation|conv_dw)\.(conv_kxk_(\d+)|conv_scale|identity)\.',
     lambda m: f'.{_RPR_OWNER[m.group(1)]}_rpr_'
               f'{"conv." + m.group(3) if m.group(3) else _RPR_BRANCH[m.group(2)]}.'),
    (r'(_rpr_(?:conv\.\d+|scale))\.bn\.', r'\1.bn1.'),
    *_seq('cheap_operation'),
    (r'short_conv\.short_conv_(\d)\.(conv|bn)\.',
     lambda m: f'short_conv.{2 * int(m.group(1)) + (m.group(2) == "bn")}.'),
), filter=_official_v3_names)


def _zoo_block_index(m) -> str:
  """``blocks_{stage}_{j}`` -> the flat index of the zoo's ``blocks`` SequentialCell."""
  offsets = [0]
  for stage in GHOSTNET_CFGS:
    offsets.append(offsets[-1] + len(stage))
  return f'{m.group(1)}blocks.{offsets[int(m.group(2))] + int(m.group(3))}.'


# MindSpore naming schemes of GhostNet v1 (``from_mindspore`` picks the one a checkpoint uses).
# 'model_zoo': mindspore-ai/models research/cv/ghostnet/src/ghostnet.py (``multiplier``; "1x"
# published): a flat ``blocks`` list (16 bottlenecks + the final ConvUnit), ConvUnit = ``conv`` +
# ``bn``, ``dw`` for the strided depthwise conv, ``shortcut.0/1``, stem ``conv_stem`` + ``bn1``,
# 1x1-conv ``conv_head``. Its channel rounding (ceil to 4) gives our channel table at
# multipliers 0.5 and 1.0 but not 1.3 (e.g. stem 24 vs 20), so it is declared for those two.
GHOSTNET_MINDSPORE_ZOO_RULES = TorchRules(rules=[
    (r'(^|\.)blocks_(\d+)_(\d+)\.', _zoo_block_index),
    (r'^conv_stem\.conv\.', 'conv_stem.'), (r'^conv_stem\.bn\.', 'bn1.'),
    (r'\.conv_dw\.', '.dw.'), (r'\.shortcut_dw\.', '.shortcut.0.'), (r'\.shortcut_pw\.', '.shortcut.1.'),
])
# 'mindcv': mindcv 0.3.0 ``mindcv/models/ghostnet.py`` (``ghostnet_050/100/130``, published
# ``.ckpt`` files): timm's names except the final ConvBnAct, a ``features`` SequentialCell.
GHOSTNET_MINDCV_RULES = TorchRules(rules=[
    *GHOSTNET_TORCH_RULES.rules,
    (r'^blocks\.9\.0\.conv\.', 'blocks.9.features.0.'),
    (r'^blocks\.9\.0\.bn1\.', 'blocks.9.features.1.'),
])
_MINDCV = MindSporeRules('mindcv', GHOSTNET_MINDCV_RULES, 'mindcv 0.3.0, mindcv/models/ghostnet.py')
_MINDSPORE_ZOO = MindSporeRules('model_zoo', GHOSTNET_MINDSPORE_ZOO_RULES,
                                'MindSpore model zoo, research/cv/ghostnet/src/ghostnet.py')


def _create(width: float, version: str = 'v1', **kwargs: Any) -> GhostNet:
  return GhostNet(cfgs=GHOSTNET_CFGS, width=width, version=version, **kwargs)


_V1 = dict(paper='GhostNet: More Features from Cheap Operations (CVPR 2020)',
           paper_url='https://arxiv.org/abs/1911.11907', torch_rules=GHOSTNET_TORCH_RULES)
_V2 = dict(paper='GhostNetV2: Enhance Cheap Operation with Long-Range Attention (NeurIPS 2022)',
           paper_url='https://arxiv.org/abs/2211.12905', torch_rules=GHOSTNET_TORCH_RULES)


@register_model('ghostnet', top1=66.2, top1_source='GhostNet paper, Table 7', reference='timm:ghostnet_050',
                mindspore_rules=(_MINDCV, _MINDSPORE_ZOO), **_V1)
def ghostnet_050(**kwargs: Any) -> GhostNet:
  return _create(0.5, **kwargs)


@register_model('ghostnet', top1=73.9, top1_source='GhostNet paper, Table 7', reference='timm:ghostnet_100',
                mindspore_rules=(_MINDCV, _MINDSPORE_ZOO), **_V1)
def ghostnet_100(**kwargs: Any) -> GhostNet:
  return _create(1.0, **kwargs)


@register_model('ghostnet', top1=75.7, top1_source='GhostNet paper, Table 7', reference='timm:ghostnet_130',
                mindspore_rules=(_MINDCV,), **_V1)
def ghostnet_130(**kwargs: Any) -> GhostNet:
  return _create(1.3, **kwargs)


@register_model('ghostnet', top1=75.3, top1_source='GhostNetV2 paper, Table 1', reference='timm:ghostnetv2_100', **_V2)
def ghostnetv2_100(**kwargs: Any) -> GhostNet:
  return _create(1.0, 'v2', **kwargs)


@register_model('ghostnet', top1=76.9, top1_source='GhostNetV2 paper, Table 1', reference='timm:ghostnetv2_130', **_V2)
def ghostnetv2_130(**kwargs: Any) -> GhostNet:
  return _create(1.3, 'v2', **kwargs)


@register_model('ghostnet', top1=77.8, top1_source='GhostNetV2 paper, Table 1', reference='timm:ghostnetv2_160', **_V2)
def ghostnetv2_160(**kwargs: Any) -> GhostNet:
  return _create(1.6, 'v2', **kwargs)


_V3 = dict(paper='GhostNetV3: Exploring the Training Strategies for Compact Models (2024)',
           paper_url='https://arxiv.org/abs/2404.11202', torch_rules=GHOSTNET_TORCH_RULES)
_V3_SRC = 'GhostNetV3 paper, comparison with compact models (re-parameterization + KD recipe)'


@register_model('ghostnet', top1=69.4, top1_source=_V3_SRC, reference='timm:ghostnetv3_050', **_V3)
def ghostnetv3_050(**kwargs: Any) -> GhostNet:
  return _create(0.5, 'v3', **kwargs)


@register_model('ghostnet', top1=77.1, top1_source=_V3_SRC, reference='timm:ghostnetv3_100', **_V3)
def ghostnetv3_100(**kwargs: Any) -> GhostNet:
  return _create(1.0, 'v3', **kwargs)


@register_model('ghostnet', top1=79.1, top1_source=_V3_SRC, reference='timm:ghostnetv3_130', **_V3)
def ghostnetv3_130(**kwargs: Any) -> GhostNet:
  return _create(1.3, 'v3', **kwargs)


@register_model('ghostnet', top1=80.4, top1_source=_V3_SRC, reference='timm:ghostnetv3_160', **_V3)
def ghostnetv3_160(**kwargs: Any) -> GhostNet:
  return _create(1.6, 'v3', **kwargs)
