"""MindSpore ``.ckpt`` checkpoints <-> Flax variables.

MindSpore names a parameter by its cell path, like PyTorch, and stores the same layouts
(``Conv2d.weight`` OIHW, ``Dense.weight`` (out, in)); only BatchNorm leaves differ: ``gamma``,
``beta``, ``moving_mean``, ``moving_variance``. So a MindSpore checkpoint becomes a PyTorch-layout
state dict by renaming those leaves, and the PyTorch engine
(:func:`~ghostnets_jax.convert.pytorch.convert_state_dict`) maps it with *MindSpore naming
rules*: a :class:`~ghostnets_jax.convert.rules.TorchRules` that spells the cell paths of the
MindSpore model file.

Rules are registered per model name or per family (the name is tried first) with
:func:`register_mindspore_rules`, next to the model, like the PyTorch rules: the MindSpore
model zoo's GhostNet (``research/cv/ghostnet``) in ``models/ghostnet.py``. Families whose
seeds are MindSpore projects (S-GhostNet, GhostNets_D, MultiGrain) register theirs in their
own model files; where the PyTorch rules already follow the MindSpore file (S-GhostNet), the
same object serves: ``register_mindspore_rules('s_ghostnet', S_GHOSTNET_TORCH_RULES)``.
"""
from __future__ import annotations

import os
import re
from typing import Any, Mapping, Optional

import numpy as np

from ghostnets_jax import storage
from ghostnets_jax.convert.pytorch import _flatten, _to_numpy, convert_state_dict, to_torch
from ghostnets_jax.convert.rules import TorchRules
from ghostnets_jax.registry import get_spec, list_models

MS_TO_TORCH_LEAF = {'gamma': 'weight', 'beta': 'bias', 'moving_mean': 'running_mean',
                    'moving_variance': 'running_var'}
FLAX_TO_MS_LEAF = {('params', 'kernel'): 'weight', ('params', 'scale'): 'gamma',
                   ('batch_stats', 'mean'): 'moving_mean', ('batch_stats', 'var'): 'moving_variance'}
# Training state that MindSpore's ModelCheckpoint saves next to the weights.
OPTIMIZER_STATE = re.compile(
    r'^(moments|accum|moment1|moment2|adam_m|adam_v|mean_grad|mean_square|ms|mom|'
    r'learning_rate|global_step|momentum|beta1_power|beta2_power|scale_sense|loss_scale|'
    r'current_iterator_step|last_overflow_iterator_step|epoch_num|step_num)(\.|$)')

_RULES: dict[str, TorchRules] = {}


def register_mindspore_rules(key: str, rules: TorchRules) -> TorchRules:
  """Registers the MindSpore parameter names of a model (``key`` = model name) or family."""
  _RULES[key] = rules
  return rules


def get_mindspore_rules(name: str) -> TorchRules:
  """The MindSpore naming rules of model ``name`` (by name, then by family)."""
  family = get_spec(name).family
  for key in (name, family):
    if key in _RULES:
      return _RULES[key]
  known = [m for m in list_models() if m in _RULES or get_spec(m).family in _RULES]
  raise ValueError(f'no MindSpore parameter mapping is registered for {name!r} (family {family!r}). '
                   f'MindSpore checkpoints load for: {", ".join(known) or "none"}. Add rules with '
                   'ghostnets_jax.convert.register_mindspore_rules next to the model.')


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
                   **overrides: Any) -> dict:
  """Converts a MindSpore checkpoint of model ``name`` into Flax ``{'params', 'batch_stats'}``.

  Args:
    name: registry name.
    checkpoint: a ``.ckpt`` path, or a mapping of parameter names to arrays/Parameters.
    num_classes: classifier size; inferred from the checkpoint's head when omitted.
    overrides: other module fields the model must be built with.

  Optimizer state in the file (``moments.*``, ``learning_rate``, ...) is ignored; anything else
  that does not fit raises :class:`~ghostnets_jax.convert.CheckpointMismatchError`.
  """
  rules = get_mindspore_rules(name)
  if isinstance(checkpoint, (str, os.PathLike)):
    checkpoint = read_mindspore_checkpoint(os.fspath(checkpoint))
  sd = {k: _to_numpy(v.asnumpy() if hasattr(v, 'asnumpy') else v) for k, v in checkpoint.items()}
  return convert_state_dict(name, _ms_to_torch_names(sd), rules, num_classes=num_classes, **overrides)


def load_mindspore_checkpoint(name: str, path: str, **kwargs: Any) -> dict:
  """Reads a MindSpore ``.ckpt`` file and converts it (see :func:`from_mindspore`)."""
  return from_mindspore(name, path, **kwargs)


def to_mindspore(name: str, variables: Mapping[str, Any],
                 shapes: Optional[Mapping[str, tuple]] = None) -> dict[str, np.ndarray]:
  """The inverse of :func:`from_mindspore`: numpy arrays keyed by MindSpore parameter names.

  ``shapes`` (name -> shape, e.g. from ``net.parameters_and_names()``) reshapes arrays whose
  layout is the same but whose rank differs (a 1x1 ``Conv2d`` that we hold as ``Dense``).
  """
  rules = get_mindspore_rules(name)
  torch_sd = to_torch(name, variables, rules=rules)
  flat = _flatten(variables)
  out = {}
  for path, (key, v) in zip(flat, torch_sd.items()):
    collection, *mods, leaf = path
    bn = (collection, *mods, 'scale') in flat
    ms_leaf = FLAX_TO_MS_LEAF.get((collection, leaf), leaf)
    if leaf == 'bias' and bn:
      ms_leaf = 'beta'
    key = f'{key.rpartition(".")[0]}.{ms_leaf}'
    if shapes is not None and key in shapes and tuple(shapes[key]) != v.shape:
      v = v.reshape(shapes[key])
    out[key] = v
  return out
