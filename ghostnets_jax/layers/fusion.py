"""The math of structural re-parameterization: folding BatchNorm and merging parallel branches.

Each layer with a train form that fuses into one convolution says how, as a :class:`FusionRule`
registered here next to the layer (:class:`~ghostnets_jax.layers.ConvBN`'s rule below,
:class:`~ghostnets_jax.layers.RepConvBN`'s in its module). :func:`ghostnets_jax.reparameterize`
walks a model's variables and applies the first matching rule to each subtree.

Kernels are HWIO ``(kh, kw, in/groups, out)``; biases ``(out,)``. The helpers follow RepVGG
(Ding et al., CVPR 2021, https://github.com/DingXiaoH/RepVGG): fold BN into each branch, pad
1x1 kernels to kxk, write the identity as a kernel, and sum.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

Tree = Mapping[str, Any]
BN_EPS = 1e-5


def fold_bn(kernel: jax.Array, bn_params: Tree, bn_stats: Tree, bias: Optional[jax.Array] = None,
            eps: float = BN_EPS) -> tuple[jax.Array, jax.Array]:
  """Folds ``bn(conv(x) + bias)`` into one ``(kernel, bias)`` (per output channel, last axis)."""
  t = bn_params['scale'] * jax.lax.rsqrt(bn_stats['var'] + eps)
  b = bias if bias is not None else jnp.zeros_like(bn_stats['mean'])
  return kernel * t.astype(kernel.dtype), (b - bn_stats['mean']) * t + bn_params['bias']


def pad_kernel(kernel: jax.Array, size: Union[int, Sequence[int]]) -> jax.Array:
  """Zero-pads an HWIO kernel symmetrically to spatial ``size`` (e.g. 1x1 -> 3x3)."""
  kh, kw = (size, size) if isinstance(size, int) else tuple(size)
  dh, dw = kh - kernel.shape[0], kw - kernel.shape[1]
  if dh < 0 or dw < 0 or dh % 2 or dw % 2:
    raise ValueError(f'cannot centre a {kernel.shape[:2]} kernel in {(kh, kw)}')
  return jnp.pad(kernel, ((dh // 2, dh // 2), (dw // 2, dw // 2), (0, 0), (0, 0)))


def identity_kernel(channels: int, groups: int = 1, kernel_size: Union[int, Sequence[int]] = 1,
                    dtype: Any = jnp.float32) -> jax.Array:
  """HWIO kernel of a ``groups``-grouped conv that copies its input (the identity branch)."""
  kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
  per_group = channels // groups
  k = np.zeros((kh, kw, per_group, channels), np.float32)
  k[kh // 2, kw // 2, np.arange(channels) % per_group, np.arange(channels)] = 1.0
  return jnp.asarray(k, dtype)


def merge_branches(branches: Iterable[tuple[jax.Array, jax.Array]]) -> tuple[jax.Array, jax.Array]:
  """Sums parallel conv branches (already BN-folded), padding each kernel to the largest size."""
  branches = list(branches)
  if not branches:
    raise ValueError('merge_branches needs at least one branch')
  kh = max(k.shape[0] for k, _ in branches)
  kw = max(k.shape[1] for k, _ in branches)
  kernel = sum(pad_kernel(k, (kh, kw)) for k, _ in branches)
  bias = sum(b for _, b in branches)
  return kernel, bias


@dataclasses.dataclass(frozen=True)
class FusionRule:
  """``match(params, stats)`` recognises a subtree; ``fuse(params, stats)`` returns its deploy params.

  ``multi_branch``: the rule merges parallel branches. Reference implementations (timm, the
  official repos) re-parameterize exactly these in their deploy checkpoints and keep plain
  conv + BN pairs unfused; ``reparameterize(..., multi_branch_only=True)`` gives that form.
  """
  name: str
  match: Callable[[Tree, Tree], bool]
  fuse: Callable[[Tree, Tree], dict]
  multi_branch: bool = False


FUSION_RULES: list[FusionRule] = []


def register_fusion_rule(rule: FusionRule) -> FusionRule:
  """Adds a rule (tried before the built-in ConvBN rule, newest first)."""
  FUSION_RULES.insert(0, rule)
  return rule


def _is_conv_bn(p: Tree, s: Tree) -> bool:
  return (set(p) == {'conv', 'bn'} and isinstance(p['conv'], Mapping) and 'kernel' in p['conv']
          and isinstance(s, Mapping) and 'bn' in s)


def _fuse_conv_bn(p: Tree, s: Tree) -> dict:
  k, b = fold_bn(p['conv']['kernel'], p['bn'], s['bn'], p['conv'].get('bias'))
  return {'conv': {'kernel': k, 'bias': b}}


FUSION_RULES.append(FusionRule('conv_bn', _is_conv_bn, _fuse_conv_bn))
