"""Structural re-parameterization as pure functions on variable pytrees.

``reparameterize(model, variables) -> (deploy_model, deploy_variables)`` folds every BatchNorm
into the convolution before it and merges parallel branches into one kernel and bias. It never
mutates a module or an array, runs under ``jax.jit`` and on sharded arrays (it only uses jnp
ops), and works for every model in the registry: each model has a ``deploy`` field whose
single-branch form reads the fused variables.

The walk over the variables applies the first matching
:class:`~ghostnets_jax.layers.fusion.FusionRule` to each subtree. The layers own the rules and
the math (``ghostnets_jax.layers.fusion``: ``fold_bn``, ``merge_branches``, ...): ``ConvBN``'s
rule folds ``{'conv', 'bn'}``, multi-branch layers register theirs
(``ghostnets_jax.layers.RepConvBN``).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax

from ghostnets_jax.initialize import FAST_COMPILE
from ghostnets_jax.layers.fusion import FUSION_RULES, FusionRule

Tree = Mapping[str, Any]


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


def _fuse_tree(variables: Tree, multi_branch_only: bool = False) -> dict:
  """Deploy variables: every ConvBN / multi-branch subtree replaced by its fused conv."""
  rules = [r for r in FUSION_RULES if r.multi_branch or not multi_branch_only]
  params, stats = _walk(variables['params'], variables.get('batch_stats', {}), rules)
  out = {'params': params}
  if stats:
    out['batch_stats'] = stats
  return out


@functools.lru_cache(maxsize=None)
def _jitted_fuse(cpu: bool, multi_branch_only: bool) -> Callable[[Tree], dict]:
  # On CPU at XLA's lowest backend optimisation level: the hundreds of tiny ops compile several
  # times faster and compute the same numbers.
  return jax.jit(functools.partial(_fuse_tree, multi_branch_only=multi_branch_only),
                 compiler_options=FAST_COMPILE if cpu else None)


def reparameterize(model: nn.Module, variables: Tree, *,
                   multi_branch_only: bool = False) -> tuple[nn.Module, dict]:
  """Returns ``(model.clone(deploy=True), fused variables)``; outputs equal in eval mode.

  The fusion is one compiled computation (inlined when already being traced): eagerly, each of
  the hundreds of small ops would dispatch (and, on first use, compile) alone.

  ``multi_branch_only=True`` fuses only multi-branch layers and keeps conv + BN pairs: the
  variable layout of the reference implementations' deploy checkpoints (timm
  ``reparameterize_model``, the official ``convert_to_deploy``; see
  :class:`~ghostnets_jax.layers.fusion.FusionRule`), used to read such checkpoints; no module
  of ours runs on it.
  """
  if not any(f.name == 'deploy' for f in dataclasses.fields(model)):
    raise ValueError(f'{type(model).__name__} has no deploy form (no `deploy` field).')
  if 'params' not in variables:
    raise ValueError("variables must hold a 'params' collection (and 'batch_stats').")
  if any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(variables)):
    fused = _fuse_tree(variables, multi_branch_only)
  else:
    fused = _jitted_fuse(jax.default_backend() == 'cpu', multi_branch_only)(variables)
  return model.clone(deploy=True), fused
