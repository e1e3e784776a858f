"""Structural re-parameterization as pure functions on variable pytrees.

``reparameterize(model, variables) -> (deploy_model, deploy_variables)`` folds every BatchNorm
into the convolution before it and merges parallel branches into one kernel and bias. It never
mutates a module or an array, runs under ``jax.jit`` and on sharded arrays (it only uses jnp
ops), and works for every model in the registry: each model has a ``deploy`` field whose
single-branch form reads the fused variables.

The walk over the variables applies the first matching :class:`FusionRule` to each subtree.
The built-in rule folds ``ConvBN`` (``{'conv', 'bn'}``); multi-branch layers register theirs
(``ghostnets_jax.layers.RepConvBN``).
Kernels are HWIO ``(kh, kw, in/groups, out)``; biases ``(out,)``.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ghostnets_jax.initialize import FAST_COMPILE

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
  conv + BN pairs unfused; ``fuse_variables(..., multi_branch_only=True)`` gives that form.
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


def _walk(p: Tree, s: Tree, rules: Sequence[FusionRule]) -> tuple[dict, dict]:
  for rule in rules:
    if rule.match(p, s):
      return rule.fuse(p, s), {}
  out_p, out_s = {}, {}
  for key, value in p.items():
    child_s = s.get(key, {}) if isinstance(s, Mapping) else {}
    if isinstance(value, Mapping):
      cp, cs = _walk(value, child_s, rules)
      out_p[key] = cp
      if cs:
        out_s[key] = cs
    else:
      out_p[key] = value
      if key in s:
        out_s[key] = s[key]
  for key, value in (s.items() if isinstance(s, Mapping) else ()):
    if key not in p:
      out_s[key] = value
  return out_p, out_s


def fuse_variables(variables: Tree, multi_branch_only: bool = False) -> dict:
  """Deploy variables: every ConvBN / multi-branch subtree replaced by its fused conv.

  ``multi_branch_only=True`` fuses only multi-branch layers and keeps conv + BN pairs: the
  layout of the reference implementations' deploy checkpoints (see :class:`FusionRule`).
  """
  rules = [r for r in FUSION_RULES if r.multi_branch or not multi_branch_only]
  params, stats = _walk(variables['params'], variables.get('batch_stats', {}), rules)
  out = {'params': params}
  if stats:
    out['batch_stats'] = stats
  return out


@functools.lru_cache(maxsize=None)
def _jitted_fuse(cpu: bool) -> Callable[[Tree], dict]:
  # On CPU at XLA's lowest backend optimisation level: the hundreds of tiny ops compile several
  # times faster and compute the same numbers.
  return jax.jit(fuse_variables, compiler_options=FAST_COMPILE if cpu else None)


def fuse(variables: Tree) -> dict:
  """:func:`fuse_variables` as one compiled computation (inlined when already being traced).

  Eagerly, each of the hundreds of small ops would dispatch (and, on first use, compile) alone.
  """
  if any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(variables)):
    return fuse_variables(variables)
  return _jitted_fuse(jax.default_backend() == 'cpu')(variables)


def reparameterize(model: nn.Module, variables: Tree) -> tuple[nn.Module, dict]:
  """Returns ``(model.clone(deploy=True), fused variables)``; outputs equal in eval mode."""
  if not any(f.name == 'deploy' for f in dataclasses.fields(model)):
    raise ValueError(f'{type(model).__name__} has no deploy form (no `deploy` field).')
  if 'params' not in variables:
    raise ValueError("variables must hold a 'params' collection (and 'batch_stats').")
  return model.clone(deploy=True), fuse(variables)
