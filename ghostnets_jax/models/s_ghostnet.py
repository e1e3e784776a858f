"""S-GhostNet: GhostNet enlarged by greedy network enlarging (depth, width, resolution).

Paper: Greedy Network Enlarging (Liu et al., 2021), arXiv:2108.00177.
Official code: MindSpore model zoo, ``research/cv/S-GhostNet`` (``src/big_net.py``, ``--large``).

The searched networks are GhostNet v1 bottlenecks (:class:`GhostBottleneck`) with a per-stage
depth and width table. In the ``--large`` mode used by the released b1/b4 models every block
has SE (ratio 0.1, width rounded to a multiple of 8), the stem and the head use HardSwish, and
the head is ``max(1280, 5 * last width)`` wide. Parameter names follow the MindSpore model file
(``blocks.1.0.dw``, ``blocks.0.0.shortcut.0``, ``blocks.6``, ``conv_stem``/``bn1``); a MindSpore
``.ckpt`` keyed that way maps onto these PyTorch-style keys by renaming the BN leaves
(gamma/beta/moving_mean/moving_variance -> weight/bias/running_mean/running_var).
"""
from __future__ import annotations

from typing import Any, Sequence

from ghostnets_jax.models.ghostnet import GhostNet
from ghostnets_jax.registry import MindSporeRules, TorchRules, blocks_index, register_model

# Expansion of each stage over its input (first block) / own width (other blocks), kernel, stride.
# Stage 3 widens its later blocks by 2.5 (the ``--large`` table), stages 4-5 by 6.
_STAGES = (  # (kernel, first-block expansion, later-block expansion, stride)
    (3, 1, 1, 1),
    (3, 3, 3, 2),
    (5, 3, 3, 2),
    (3, 6, 2.5, 2),
    (3, 6, 6, 1),
    (5, 6, 6, 2),
)
SE_RATIO = 0.1


def large_cfgs(layers: Sequence[int], channels: Sequence[int]) -> tuple:
  """Block table ``((kernel, hidden, out, se_ratio, stride), ...)`` per stage, ``--large`` mode."""
  if len(layers) != len(_STAGES) or len(channels) != len(_STAGES):
    raise ValueError(f'S-GhostNet needs {len(_STAGES)} stage depths and widths, got '
                     f'layers={tuple(layers)}, channels={tuple(channels)}.')
  cfgs = []
  for i, ((k, first_exp, exp, s), n, c) in enumerate(zip(_STAGES, layers, channels)):
    c_in = channels[i - 1] if i > 0 else c
    cfgs.append(tuple((k, c_in * first_exp if j == 0 else c * exp, c, SE_RATIO, s if j == 0 else 1)
                      for j in range(n)))
  return tuple(cfgs)


def _create(layers: Sequence[int], channels: Sequence[int], **kwargs: Any) -> GhostNet:
  cfg = dict(cfgs=large_cfgs(layers, channels), stem_chs=channels[0], act='hard_swish',
             se_divisor=8, head_chs=max(1280, int(channels[-1] * 5)))
  return GhostNet(**{**cfg, **kwargs})


S_GHOSTNET_TORCH_RULES = TorchRules(rules=[
    blocks_index('blocks', 'blocks'),
    (r'^conv_stem\.conv\.', 'conv_stem.'), (r'^conv_stem\.bn\.', 'bn1.'),
    (r'\.conv_dw\.', '.dw.'),
    (r'\.shortcut_dw\.', '.shortcut.0.'), (r'\.shortcut_pw\.', '.shortcut.1.'),
    (r'^blocks\.6\.0\.', 'blocks.6.'),  # the final 1x1 ConvBnAct is a stage of its own
])
# The same names are the MindSpore cell paths of big_net.py (BN leaves renamed by from_mindspore).
S_GHOSTNET_MINDSPORE_RULES = MindSporeRules(
    'model_zoo', S_GHOSTNET_TORCH_RULES, 'MindSpore model zoo, research/cv/S-GhostNet/src/big_net.py')

_PAPER = dict(paper='Greedy Network Enlarging (S-GhostNet, 2021)',
              paper_url='https://arxiv.org/abs/2108.00177',
              top1_source='MindSpore model zoo, research/cv/S-GhostNet README',
              torch_rules=S_GHOSTNET_TORCH_RULES, mindspore_rules=(S_GHOSTNET_MINDSPORE_RULES,))


@register_model('s_ghostnet', input_size=240, top1=79.844, **_PAPER)
def s_ghostnet_b1(**kwargs: Any) -> GhostNet:
  return _create((1, 2, 3, 4, 3, 6), (28, 44, 72, 140, 196, 280), **kwargs)


@register_model('s_ghostnet', input_size=384, top1=83.024, **_PAPER)
def s_ghostnet_b4(**kwargs: Any) -> GhostNet:
  return _create((3, 5, 5, 12, 6, 14), (36, 60, 108, 168, 232, 336), **kwargs)
