"""PyTorch state dicts (timm, torchvision, official repos) <-> Flax variables.

Pure functions on dicts: nothing is loaded from a hub. Conv kernels OIHW <-> HWIO, linear
weights (out, in) <-> (in, out); every key is accounted for: missing, unexpected or mis-shaped
keys raise :class:`CheckpointMismatchError` naming them.
"""
from __future__ import annotations

import functools
from typing import Any, Iterator, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from ghostnets_jax import storage
from ghostnets_jax.errors import UserError
from ghostnets_jax.registry import TorchRules, create_model, get_spec, list_models
from ghostnets_jax.reparam import reparameterize


class CheckpointMismatchError(UserError, ValueError):
  """A checkpoint does not fit the model: lists missing, unexpected and mis-shaped keys
  (``mismatches``: how many in all)."""
  mismatches: int = 0


def _to_numpy(v: Any) -> np.ndarray:
  if hasattr(v, 'detach'):  # torch.Tensor, without importing torch
    v = v.detach().cpu()
    if str(v.dtype) == 'torch.bfloat16':
      v = v.float()
    v = v.numpy()
  # Copy: torch (and JAX on CPU) may share this memory, and torch mutates buffers in place.
  return np.array(v, copy=True)


def _torch_to_flax(v: np.ndarray, shape: tuple[int, ...]) -> Optional[np.ndarray]:
  """Transposes a torch tensor to the flax layout ``shape``; None if it cannot fit."""
  if v.ndim == 4 and len(shape) == 4:
    v = v.transpose(2, 3, 1, 0)
  elif v.ndim == 4 and len(shape) == 2 and v.shape[2:] == (1, 1):
    v = v[:, :, 0, 0].T
  elif v.ndim == 2 and len(shape) == 2:
    v = v.T
  return v if tuple(v.shape) == tuple(shape) else None


def _flax_to_torch(v: np.ndarray, torch_shape: Optional[tuple[int, ...]] = None) -> np.ndarray:
  if v.ndim == 4:
    return v.transpose(3, 2, 0, 1)
  if v.ndim == 2:
    v = v.T
    if torch_shape is not None and len(torch_shape) == 4:
      v = v[:, :, None, None]
  return v


def get_torch_rules(name: str) -> TorchRules:
  """The PyTorch naming rules declared on model ``name``'s registry entry."""
  rules = get_spec(name).torch_rules
  if rules is None:
    known = [m for m in list_models() if get_spec(m).torch_rules is not None]
    raise ValueError(f'no PyTorch weight mapping is declared for {name!r}. PyTorch checkpoints '
                     f'load for: {", ".join(known) or "none"}. Declare one on the model\'s '
                     'registry entry: register_model(..., torch_rules=TorchRules(...)).')
  return rules


def strip_prefix(state_dict: Mapping[str, Any], prefixes: Sequence[str] = ('module.', 'model.')) -> dict:
  """Drops the wrapper prefix of DDP / EMA checkpoints from every key."""
  out = {}
  for k, v in state_dict.items():
    for p in prefixes:
      if k.startswith(p):
        k = k[len(p):]
        break
    out[k] = v
  return out


def normalize_state_dict(name: str, state_dict: Mapping[str, Any],
                         rules: Optional[TorchRules] = None) -> dict[str, np.ndarray]:
  """Unwraps ``{'state_dict': ...}``-style checkpoints, strips DDP prefixes, applies the family filter."""
  for key in ('state_dict_ema', 'model_ema', 'state_dict', 'model', 'net'):
    if key in state_dict and isinstance(state_dict[key], Mapping):
      state_dict = state_dict[key]
      break
  sd = strip_prefix(state_dict)
  rules = rules or get_torch_rules(name)
  if rules.filter is not None:
    sd = rules.filter(sd)
  return {k: v for k, v in sd.items() if not rules.ignored(k)}


@functools.lru_cache(maxsize=32)
def abstract_variables(model, input_size: int = 64) -> dict:
  """Shapes of ``model``'s variables (no computation; cached: tracing a large model takes seconds)."""
  x = jax.ShapeDtypeStruct((1, input_size, input_size, 3), jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)


def _deploy_layouts(model, input_size: int) -> Iterator[dict]:
  """Variable layouts of deploy checkpoints: the reference implementations' (multi-branch layers
  fused, conv + BN pairs kept, as timm ``reparameterize_model`` / official ``convert_to_deploy``
  save them), then our fully fused one (``to_torch(..., deploy=True)``)."""
  train = abstract_variables(model, input_size)
  yield jax.eval_shape(lambda v: reparameterize(model, v, multi_branch_only=True)[1], train)
  yield abstract_variables(model.clone(deploy=True), input_size)


def _match(template: Mapping, sd: Mapping[str, np.ndarray], rules, deploy: bool):
  """Fills ``template``'s leaves from ``sd``: ``(flat, missing, unexpected, misshaped)``."""
  flat, missing, misshaped, used = {}, [], [], set()
  for path, leaf in traverse_util.flatten_dict(template).items():
    key = rules.key(path, deploy)
    if key not in sd:
      missing.append(key)
      continue
    used.add(key)
    v = _torch_to_flax(sd[key], leaf.shape)
    if v is None:
      misshaped.append(f'{key}: checkpoint {tuple(sd[key].shape)}, model needs '
                       f'{tuple(_flax_to_torch(np.zeros(leaf.shape, np.float32)).shape)}')
      continue
    flat[path] = jnp.asarray(v, dtype=leaf.dtype)
  order = {k: i for i, k in enumerate(sd)}  # report in the checkpoint's own key order
  misshaped.sort(key=lambda m: order.get(m.split(':')[0], len(order)))
  return flat, missing, sorted(set(sd) - used, key=order.get), misshaped


def from_torch(name: str, state_dict: Mapping[str, Any], *, deploy: bool = False,
               num_classes: Optional[int] = None, **overrides: Any) -> dict:
  """Converts a PyTorch state dict of model ``name`` into Flax ``{'params', 'batch_stats'}``.

  Args:
    name: registry name.
    state_dict: tensors (torch or numpy) keyed as in timm / the official repo.
    deploy: the checkpoint is in re-parameterized (deploy) form: either the reference's
      (timm ``reparameterize_model``, official ``convert_to_deploy``; multi-branch layers fused,
      conv + BN pairs kept) or ours (``to_torch(..., deploy=True)``). Returns the variables of
      ``model.clone(deploy=True)`` (everything fused, as ``ghostnets_jax.reparameterize``).
    num_classes: classifier size; inferred from the checkpoint's head when omitted.
    overrides: other module fields the model must be built with.
  """
  return convert_state_dict(name, state_dict, get_torch_rules(name), deploy=deploy,
                            num_classes=num_classes, **overrides)


def _create(name: str, num_classes: int, overrides: Mapping[str, Any]):
  """``create_model``; fields its builder sets itself (e.g. a smaller ``cfgs``) via ``clone``,
  as the trainer's ``config.model_kwargs``."""
  try:
    return create_model(name, num_classes=num_classes, **overrides)
  except TypeError:
    return create_model(name, num_classes=num_classes).clone(**overrides)


def convert_state_dict(name: str, state_dict: Mapping[str, Any], rules: TorchRules, *,
                       deploy: bool = False, num_classes: Optional[int] = None,
                       **overrides: Any) -> dict:
  """The engine of :func:`from_torch` for any naming ``rules`` (PyTorch-layout tensors)."""
  spec = get_spec(name)
  sd = {k: _to_numpy(v) for k, v in normalize_state_dict(name, state_dict, rules).items()}
  if num_classes is None:
    head = sd.get(rules.head_key) if rules.head_key else None
    num_classes = int(head.shape[0]) if head is not None else 1000
  model = _create(name, num_classes, overrides)
  layouts = (_deploy_layouts(model, spec.input_size) if deploy
             else [abstract_variables(model, spec.input_size)])
  first = None
  for layout in layouts:
    flat, missing, unexpected, misshaped = result = _match(layout, sd, rules, deploy)
    if not (missing or unexpected or misshaped):
      variables = traverse_util.unflatten_dict(flat)
      return reparameterize(model, variables)[1] if deploy else variables
    first = first or result
  _, missing, unexpected, misshaped = first
  lines = [f'checkpoint does not match model {name!r}{" (deploy form)" if deploy else ""}:']
  for title, items in (('missing', missing), ('unexpected', unexpected), ('mis-shaped', misshaped)):
    if items:
      shown = ', '.join(items[:12]) + (f', ... ({len(items)} in all)' if len(items) > 12 else '')
      lines.append(f'  {title} keys: {shown}')
  other = [abstract_variables(model, spec.input_size)] if deploy else _deploy_layouts(model, spec.input_size)
  if any(not any(_match(t, sd, rules, not deploy)[1:]) for t in other):
    lines.append(f'  hint: this is a {"train" if deploy else "re-parameterized (deploy)"}-form '
                 f'checkpoint of this model; pass deploy={not deploy}.')
  lines.append('  Is it a checkpoint of another model? Check the name and the overrides.')
  err = CheckpointMismatchError('\n'.join(lines))
  err.mismatches = len(missing) + len(unexpected) + len(misshaped)
  raise err


def to_torch(name: str, variables: Mapping[str, Any], *, deploy: bool = False,
             rules: Optional[TorchRules] = None) -> dict[str, np.ndarray]:
  """The inverse of :func:`from_torch`: numpy arrays keyed by PyTorch state-dict names.

  1x1 convolutions that we hold as ``Dense`` come back as 2-D weights; load with
  ``strict=False`` or reshape where the PyTorch model wants 4-D.
  """
  rules = rules or get_torch_rules(name)
  return {rules.key(path, deploy): np.ascontiguousarray(_flax_to_torch(np.asarray(v)))
          for path, v in traverse_util.flatten_dict(variables).items()}


def load_torch_checkpoint(name: str, path: str, **kwargs: Any) -> dict:
  """Reads a ``.pth``/``.pt``/``.bin`` (torch) or ``.safetensors`` file and converts it."""
  if not storage.path(path).exists():
    raise FileNotFoundError(f'checkpoint file not found: {path}')
  with storage.local_file(path) as local:   # a gs:// file is read through a local copy
    if local.endswith('.safetensors'):
      from safetensors.numpy import load_file
      sd = load_file(local)
    else:
      try:
        import torch
      except ImportError as e:
        raise ImportError(f'reading {path} needs PyTorch (pip install torch), or convert it to '
                          '.safetensors first') from e
      sd = torch.load(local, map_location='cpu', weights_only=True)
  return from_torch(name, sd, **kwargs)
