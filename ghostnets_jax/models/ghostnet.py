"""C-GhostNet (GhostNet v1) and GhostNetV2.

Papers:
  * GhostNet: More Features from Cheap Operations (Han et al., CVPR 2020), arXiv:1911.11907
  * GhostNetV2: Enhance Cheap Operation with Long-Range Attention (Tang et al., NeurIPS 2022),
    arXiv:2211.12905
Official code: https://github.com/huawei-noah/Efficient-AI-Backbones (ghostnet_pytorch,
ghostnetv2_pytorch); timm's ``ghostnet_*`` / ``ghostnetv2_*`` use the same parameter names.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from ghostnets_jax.convert.mindspore import register_mindspore_rules
from ghostnets_jax.convert.rules import TorchRules, blocks_index, register_torch_rules
from ghostnets_jax.layers import (ConvBN, DropPath, GhostModule, GhostModuleV2, SqueezeExcite,
                                  check_images, global_avg_pool, make_divisible)
from ghostnets_jax.registry import register_model


class GhostBottleneck(nn.Module):
  """Ghost bottleneck: ghost (expand) -> [dw conv, stride 2] -> [SE] -> ghost (linear) + shortcut.

  ``mode='attn'`` uses the GhostNetV2 module (DFC attention) for the expanding ghost module.
  """
  mid_chs: int
  out_chs: int
  dw_kernel_size: int = 3
  strides: int = 1
  se_ratio: float = 0.0
  mode: str = 'original'
  drop_path_rate: float = 0.0
  deploy: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    in_chs = x.shape[-1]
    kw = dict(deploy=self.deploy, dtype=self.dtype)
    ghost1 = GhostModuleV2 if self.mode == 'attn' else GhostModule
    y = ghost1(self.mid_chs, act='relu', name='ghost1', **kw)(x, train)
    if self.strides > 1:
      y = ConvBN(self.mid_chs, self.dw_kernel_size, self.strides, groups=self.mid_chs,
                 name='conv_dw', **kw)(y, train)
    if self.se_ratio > 0:
      y = SqueezeExcite(make_divisible(self.mid_chs * self.se_ratio, 4), dtype=self.dtype,
                        name='se')(y)
    y = GhostModule(self.out_chs, act=None, name='ghost2', **kw)(y, train)
    if in_chs == self.out_chs and self.strides == 1:
      shortcut = x
    else:
      shortcut = ConvBN(in_chs, self.dw_kernel_size, self.strides, groups=in_chs,
                        name='shortcut_dw', **kw)(x, train)
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


class GhostNet(nn.Module):
  """GhostNet v1/v2 classifier on NHWC images.

  Attributes:
    width: channel multiplier (0.5, 1.0, 1.3, 1.6 in the papers), rounded to multiples of 4.
    version: 'v1' (C-Ghost modules) or 'v2' (DFC attention in every block after the second).
    drop_rate: dropout before the classifier. drop_path_rate: stochastic depth (0 in the papers).
    num_classes: 0 returns the 1280-d pre-logits.
    deploy: BN folded into the convolutions (see ``ghostnets_jax.reparameterize``).
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

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    check_images(x, self.in_chans, type(self).__name__)
    kw = dict(deploy=self.deploy, dtype=self.dtype)
    if self.dtype is not None:
      x = x.astype(self.dtype)
    x = ConvBN(make_divisible(16 * self.width, 4), 3, 2, act='relu', name='conv_stem', **kw)(x, train)
    n_blocks = sum(len(s) for s in self.cfgs)
    idx = 0
    for i, stage in enumerate(self.cfgs):
      for j, (k, exp, c, se, s) in enumerate(stage):
        mode = 'attn' if self.version == 'v2' and idx > 1 else 'original'
        x = GhostBottleneck(make_divisible(exp * self.width, 4), make_divisible(c * self.width, 4),
                            k, s, se, mode, self.drop_path_rate * idx / n_blocks,
                            name=f'blocks_{i}_{j}', **kw)(x, train)
        idx += 1
    x = ConvBN(make_divisible(self.cfgs[-1][-1][1] * self.width, 4), 1, act='relu',
               name=f'blocks_{len(self.cfgs)}_0', **kw)(x, train)
    x = global_avg_pool(x)
    x = nn.relu(nn.Dense(self.head_chs, dtype=self.dtype, name='conv_head')(x))
    if self.num_classes <= 0:
      return x
    x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name='classifier')(x)
    return x.astype(jnp.float32)


def _seq(name: str, first: int = 0) -> list[tuple[str, str]]:
  """ConvBN ``name`` stored as ``nn.Sequential(conv, bn)`` at indices ``first``, ``first+1``."""
  return [(rf'(^|\.){name}\.conv\.', rf'\1{name}.{first}.'),
          (rf'(^|\.){name}\.bn\.', rf'\1{name}.{first + 1}.')]


def _drop_thop_keys(sd: dict) -> dict:
  """Official checkpoints may carry thop's ``total_ops``/``total_params`` buffers."""
  return {k: v for k, v in sd.items() if not k.endswith(('total_ops', 'total_params'))}


GHOSTNET_TORCH_RULES = register_torch_rules('ghostnet', TorchRules(rules=[
    blocks_index('blocks', 'blocks'),
    (r'^conv_stem\.conv\.', 'conv_stem.'), (r'^conv_stem\.bn\.', 'bn1.'),
    *_seq('primary_conv'), *_seq('cheap_operation'),
    (r'short_conv\.short_conv_(\d)\.(conv|bn)\.',
     lambda m: f'short_conv.{2 * int(m.group(1)) + (m.group(2) == "bn")}.'),
    (r'\.conv_dw\.conv\.', '.conv_dw.'), (r'\.conv_dw\.bn\.', '.bn_dw.'),
    *_seq('shortcut_dw', 0), (r'shortcut_dw\.', 'shortcut.'),
    *_seq('shortcut_pw', 2), (r'shortcut_pw\.', 'shortcut.'),
    (r'^(blocks\.9\.0)\.bn\.', r'\1.bn1.'),
], filter=_drop_thop_keys))


def _zoo_block_index(m) -> str:
  """``blocks_{stage}_{j}`` -> the flat index of the zoo's ``blocks`` SequentialCell."""
  offsets = [0]
  for stage in GHOSTNET_CFGS:
    offsets.append(offsets[-1] + len(stage))
  return f'{m.group(1)}blocks.{offsets[int(m.group(2))] + int(m.group(3))}.'


# MindSpore model zoo (mindspore-ai/models, research/cv/ghostnet/src/ghostnet.py, "1x"): a flat
# ``blocks`` list (16 bottlenecks + the final ConvUnit), ConvUnit = ``conv`` + ``bn``, ``dw`` for
# the strided depthwise conv, ``shortcut.0/1``, stem ``conv_stem`` + ``bn1``, 1x1-conv ``conv_head``.
# Its channel rounding (ceil to 4) equals ours only at width 1.0, so the rules are for ghostnet_100.
GHOSTNET_MINDSPORE_ZOO_RULES = register_mindspore_rules('ghostnet_100', TorchRules(rules=[
    (r'(^|\.)blocks_(\d+)_(\d+)\.', _zoo_block_index),
    (r'^conv_stem\.conv\.', 'conv_stem.'), (r'^conv_stem\.bn\.', 'bn1.'),
    (r'\.conv_dw\.', '.dw.'), (r'\.shortcut_dw\.', '.shortcut.0.'), (r'\.shortcut_pw\.', '.shortcut.1.'),
]))


def _create(width: float, version: str = 'v1', **kwargs: Any) -> GhostNet:
  return GhostNet(cfgs=GHOSTNET_CFGS, width=width, version=version, **kwargs)


_V1 = dict(paper='GhostNet: More Features from Cheap Operations (CVPR 2020)',
           paper_url='https://arxiv.org/abs/1911.11907')
_V2 = dict(paper='GhostNetV2: Enhance Cheap Operation with Long-Range Attention (NeurIPS 2022)',
           paper_url='https://arxiv.org/abs/2211.12905')


@register_model('ghostnet', top1=66.2, top1_source='GhostNet paper, Table 7', reference='timm:ghostnet_050', **_V1)
def ghostnet_050(**kwargs: Any) -> GhostNet:
  return _create(0.5, **kwargs)


@register_model('ghostnet', top1=73.9, top1_source='GhostNet paper, Table 7', reference='timm:ghostnet_100', **_V1)
def ghostnet_100(**kwargs: Any) -> GhostNet:
  return _create(1.0, **kwargs)


@register_model('ghostnet', top1=75.7, top1_source='GhostNet paper, Table 7', reference='timm:ghostnet_130', **_V1)
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
