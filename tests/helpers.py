"""Shared, cached model construction for registry-driven tests (one compile per model/shape)."""
from __future__ import annotations

import fnmatch
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np

import ghostnets_jax as gj
from ghostnets_jax.initialize import FAST_COMPILE  # noqa: F401  (tests run small inputs once)
from ghostnets_jax.initialize import random_variables as init_random_variables

SMALL = 64  # input size for registry-wide tests: enough for every model's total stride of 32


def one_per_architecture(names: list[str]) -> list[str]:
  """The first of each set of names that differ only in a trailing width tag (``_050``/``_100``,
  ``_b1``/``_b4``): widths share every code path, so checks that only exercise code take one."""
  seen = {}
  for n in sorted(names):
    seen.setdefault(re.sub(r'_b?\d+$', '', n), n)
  return sorted(seen.values())


# Families registered at every width of one architecture table (the same code at other depths and
# channel counts): the registry-wide compiled checks (forward, re-parameterization) take one width
# of each; every width is converted from PyTorch, re-parameterized and compared with PyTorch at a
# small input (the G-Ghost widths also through ONNX) in tests/test_g_ghostnet_parity.py, and still
# gets the uncompiled checks.
WIDTH_TABLES = ('g_ghost_regnetx_*', 'regnetx_*')


def compiled_cases(names: list[str]) -> list[str]:
  """``names`` with one width (:func:`one_per_architecture`) of each :data:`WIDTH_TABLES` family."""
  table = [n for n in names if any(fnmatch.fnmatch(n, p) for p in WIDTH_TABLES)]
  keep = set(one_per_architecture(table))
  return [n for n in names if n not in table or n in keep]


def randomize_bn_stats(variables: dict, seed: int = 0) -> dict:
  """Random BN scale/bias and running stats in a Flax tree (BN leaves found by name)."""
  rng = np.random.RandomState(seed)

  def visit(p, s):
    out_p, out_s = {}, {}
    for k, v in p.items():
      if isinstance(v, dict):
        cp, cs = visit(v, s.get(k, {}))
        out_p[k] = cp
        if cs:
          out_s[k] = cs
      else:
        out_p[k] = v
    if set(s) >= {'mean', 'var'} and not any(isinstance(v, dict) for v in s.values()):
      c = s['mean'].shape
      out_s = {'mean': jnp.asarray(rng.normal(0, 0.2, c), jnp.float32),
               'var': jnp.asarray(rng.uniform(0.5, 2.0, c), jnp.float32)}
      out_p = {'scale': jnp.asarray(rng.uniform(0.5, 1.5, c), jnp.float32),
               'bias': jnp.asarray(rng.normal(0, 0.2, c), jnp.float32)}
    elif any(k.startswith('conv_kxk_') for k in out_p):
      # RepConvBN: n parallel BN-ed branches are summed; scale each by 1/n so activations stay
      # O(1) through deep stacks (GhostNetV3 logits reach 1e10 otherwise, beyond float32 checks).
      out_p = {k: _scale_bn(v, 1.0 / len(out_p)) for k, v in out_p.items()}
    else:
      for k, v in s.items():
        if k not in p:
          out_s[k] = v
    return out_p, out_s

  params, stats = visit(variables['params'], variables.get('batch_stats', {}))
  return {'params': params, 'batch_stats': stats} if stats else {'params': params}


def _scale_bn(branch: dict, factor: float) -> dict:
  """Multiplies the affine BN parameters of a ConvBN (``{'conv', 'bn'}``) or BatchNorm subtree."""
  if 'bn' in branch:
    return {**branch, 'bn': _scale_bn(branch['bn'], factor)}
  return {k: v * factor for k, v in branch.items()}


def random_variables(model, size: int = SMALL, seed: int = 0) -> dict:
  """Random variables of the right shapes without compiling ``init``, with random BN statistics."""
  return randomize_bn_stats(init_random_variables(model, size, seed), seed)


@functools.lru_cache(maxsize=None)
def model_and_variables(name: str, size: int = SMALL, num_classes: int = 10):
  """``(model, variables)`` with random weights and BN statistics, cached per test process."""
  model = gj.create_model(name, num_classes=num_classes)
  return model, random_variables(model, size)


@functools.lru_cache(maxsize=None)
def jitted_apply(model):
  return jax.jit(functools.partial(model.apply, train=False), compiler_options=FAST_COMPILE)
