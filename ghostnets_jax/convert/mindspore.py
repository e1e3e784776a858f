"""MindSpore ``.ckpt`` checkpoints <-> Flax variables.

MindSpore names a parameter by its cell path, like PyTorch, and stores the same layouts
(``Conv2d.weight`` OIHW, ``Dense.weight`` (out, in)); only BatchNorm leaves differ: ``gamma``,
``beta``, ``moving_mean``, ``moving_variance``. So a MindSpore checkpoint becomes a PyTorch-layout
state dict by renaming those leaves, and the PyTorch engine
(:func:`~ghostnets_jax.convert.pytorch.convert_state_dict`) maps it with *MindSpore naming
rules*: a :class:`~ghostnets_jax.registry.TorchRules` that spells the cell paths of the
MindSpore model file.

A model declares its rules on its registry entry, each under the name of its *naming scheme*
(the MindSpore code that wrote the checkpoint):
``register_model(..., mindspore_rules=(MindSporeRules('mindcv', rules, source),))``.
A model may have several schemes (GhostNet: mindcv 0.3.0 and the MindSpore model zoo's
``research/cv/ghostnet``); :func:`from_mindspore` picks the one whose names the checkpoint
uses (or the one given as ``scheme=``), and a checkpoint that fits none raises an error naming
every scheme of that model and the mismatch of the closest one.
"""
from __future__ import annotations

import os
import re
from typing import Any, Mapping, Optional

import numpy as np
from flax import traverse_util

from ghostnets_jax import storage
from ghostnets_jax.convert.pytorch import (CheckpointMismatchError, _to_numpy,
                                           convert_state_dict, to_torch)
from ghostnets_jax.registry import TorchRules, get_spec, list_models

MS_TO_TORCH_LEAF = {'gamma': 'weight', 'beta': 'bias', 'moving_mean': 'running_mean',
                    'moving_variance': 'running_var'}
FLAX_TO_MS_LEAF = {('params', 'kernel'): 'weight', ('params', 'scale'): 'gamma',
                   ('batch_stats', 'mean'): 'moving_mean', ('batch_stats', 'var'): 'moving_variance'}
# Training state that MindSpore's ModelCheckpoint saves next to the weights.
OPTIMIZER_STATE = re.compile(
    r'^(moments|accum|moment1|moment2|adam_m|adam_v|mean_grad|mean_square|ms|mom|'
    r'learning_rate|global_step|momentum|beta1_power|beta2_power|scale_sense|loss_scale|'
    r'current_iterator_step|last_overflow_iterator_step|epoch_num|step_num)(\.|$)')

def mindspore_schemes(name: str) -> dict[str, TorchRules]:
  """``{scheme: rules}`` of model ``name``, as declared on its registry entry."""
  return {m.scheme: m.rules for m in get_spec(name).mindspore_rules}


def _describe(name: str, schemes) -> str:
  sources = {m.scheme: m.source for m in get_spec(name).mindspore_rules}
  return ', '.join(f"'{s}'" + (f' ({sources[s]})' if sources.get(s) else '') for s in schemes)


def get_mindspore_rules(name: str, scheme: Optional[str] = None) -> TorchRules:
  """The MindSpore naming rules of model ``name`` for ``scheme`` (optional when it has one)."""
  schemes = mindspore_schemes(name)
  if not schemes:
    known = [m for m in list_models() if mindspore_schemes(m)]
    raise ValueError(f'no MindSpore parameter mapping is declared for {name!r} (family '
                     f'{get_spec(name).family!r}). MindSpore checkpoints load for: '
                     f'{", ".join(known) or "none"}. Declare them on the model\'s registry entry: '
                     'register_model(..., mindspore_rules=(MindSporeRules(...),)).')
  if scheme is None and len(schemes) == 1:
    return next(iter(schemes.values()))
  if scheme not in schemes:
    what = 'choose' if scheme is None else f'unknown naming scheme {scheme!r}; choose'
    raise ValueError(f'{name}: {what} scheme= one of the MindSpore naming schemes of this model: '
                     f'{_describe(name, schemes)}.')
  return schemes[scheme]


def _ms_to_torch_names(ckpt: Mapping[str, Any]) -> dict[str, Any]:
  out = {}
  for k, v in ckpt.items():
    if OPTIMIZER_STATE.match(k):
      continue
    head, _, leaf = k.rpartition('.')
    out[f'{head}.{MS_TO_TORCH_LEAF[leaf]}' if head and leaf in MS_TO_TORCH_LEAF else k] = v
  return out


def _mindspore():
  try:
    import mindspore
  except ImportError as e:
    raise ImportError('reading MindSpore .ckpt files needs MindSpore: pip install '
                      '"ghostnets_jax[ascend]" (or pip install mindspore==2.10.0)') from e
  return mindspore


def read_mindspore_checkpoint(path: str) -> dict[str, np.ndarray]:
  """``{name: array}`` of a MindSpore ``.ckpt`` file (``mindspore.load_checkpoint``)."""
  if not storage.path(path).exists():
    raise FileNotFoundError(f'checkpoint file not found: {path}')
  ms = _mindspore()
  with storage.local_file(path) as local:   # MindSpore reads local files only
    return {k: np.array(v.asnumpy(), copy=True) for k, v in ms.load_checkpoint(local).items()}


def from_mindspore(name: str, checkpoint: Any, *, num_classes: Optional[int] = None,
                   scheme: Optional[str] = None, **overrides: Any) -> dict:
  """Converts a MindSpore checkpoint of model ``name`` into Flax ``{'params', 'batch_stats'}``.

  Args:
    name: registry name.
    checkpoint: a ``.ckpt`` path, or a mapping of parameter names to arrays/Parameters.
    num_classes: classifier size; inferred from the checkpoint's head when omitted.
    scheme: the naming scheme (``mindspore_schemes(name)``); by default every scheme of the model
      is tried and the one the checkpoint's names fit is used.
    overrides: other module fields the model must be built with.

  Optimizer state in the file (``moments.*``, ``learning_rate``, ...) is ignored; anything else
  that does not fit raises :class:`~ghostnets_jax.convert.CheckpointMismatchError`, naming the
  model's schemes and the mismatch of the closest one.
  """
  schemes = ({scheme: get_mindspore_rules(name, scheme)} if scheme is not None
             else mindspore_schemes(name) or {None: get_mindspore_rules(name)})
  if isinstance(checkpoint, (str, os.PathLike)):
    checkpoint = read_mindspore_checkpoint(os.fspath(checkpoint))
  sd = {k: _to_numpy(v.asnumpy() if hasattr(v, 'asnumpy') else v) for k, v in checkpoint.items()}
  sd = _ms_to_torch_names(sd)
  errors = []
  for s, rules in schemes.items():
    try:
      return convert_state_dict(name, sd, rules, num_classes=num_classes, **overrides)
    except CheckpointMismatchError as e:
      errors.append((s, e))
  closest, err = min(errors, key=lambda se: se[1].mismatches)
  if closest is None:
    raise err
  raise CheckpointMismatchError(
      f'the checkpoint fits none of the MindSpore naming schemes of {name!r}: '
      f'{_describe(name, schemes)}. Closest, {closest!r}:\n{err}')


def load_mindspore_checkpoint(name: str, path: str, **kwargs: Any) -> dict:
  """Reads a MindSpore ``.ckpt`` file and converts it (see :func:`from_mindspore`)."""
  return from_mindspore(name, path, **kwargs)


def to_mindspore(name: str, variables: Mapping[str, Any],
                 shapes: Optional[Mapping[str, tuple]] = None,
                 scheme: Optional[str] = None) -> dict[str, np.ndarray]:
  """The inverse of :func:`from_mindspore`: numpy arrays keyed by MindSpore parameter names.

  ``shapes`` (name -> shape, e.g. from ``net.parameters_and_names()``) reshapes arrays whose
  layout is the same but whose rank differs (a 1x1 ``Conv2d`` that we hold as ``Dense``), and
  picks the naming scheme whose names they are when ``scheme`` is not given.
  """
  if scheme is None and shapes is not None and len(mindspore_schemes(name)) > 1:
    flat = traverse_util.flatten_dict(variables)
    fits = [s for s, r in mindspore_schemes(name).items()
            if {_ms_key(r, p, flat) for p in flat} == set(shapes)]
    scheme = fits[0] if fits else None
  rules = get_mindspore_rules(name, scheme)
  torch_sd = to_torch(name, variables, rules=rules)
  flat = traverse_util.flatten_dict(variables)
  out = {}
  for path, v in zip(flat, torch_sd.values()):
    key = _ms_key(rules, path, flat)
    if shapes is not None and key in shapes and tuple(shapes[key]) != v.shape:
      v = v.reshape(shapes[key])
    out[key] = v
  return out


def _ms_key(rules: TorchRules, path: tuple, flat: Mapping[tuple, Any]) -> str:
  """The MindSpore name of flax leaf ``path``: the rules' key with MindSpore's BN leaf names."""
  collection, *mods, leaf = path
  ms_leaf = FLAX_TO_MS_LEAF.get((collection, leaf), leaf)
  if leaf == 'bias' and (collection, *mods, 'scale') in flat:
    ms_leaf = 'beta'
  return f'{rules.key(path).rpartition(".")[0]}.{ms_leaf}'
