"""Reading ghostnets_jax training runs (orbax checkpoints) without the training code.

A run directory (``--workdir`` of ``main.py``, local or ``gs://``) holds ``run.json`` (model,
``model_kwargs``, classes), ``resolved_config.json`` (image size, preprocessing) and
``checkpoints/<step>/`` (orbax: ``state`` arrays, ``data`` JSON with the save-time fingerprint).

* :func:`load_run` -> ``(model, variables)``: the network the run trained, ready for ``apply``,
  export or conversion.
* :func:`restore_variables` -> ``{'params', 'batch_stats'}`` of one checkpoint.
* :func:`run_info`: what the run says about itself (model, kwargs, classes, input size, mean/std).

Every stored array is read once synchronously before orbax restores a step (a damaged file raises
here, never inside orbax's concurrent restore, whose error path can deadlock in tensorstore), and
the restored state is compared with the fingerprint written when it was saved.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Callable, Optional, Union

from ghostnets_jax import storage
from ghostnets_jax.errors import UserError

CHECKSUM_KEY = '_checksum'   # in the JSON item: the state's fingerprint at save time
BEST_METRIC = 'top1'
WEIGHTS = ('auto', 'ema', 'raw')


class CorruptCheckpointError(UserError, RuntimeError):
  """A checkpoint that cannot be read, or whose contents differ from what was saved."""


class RunError(UserError, ValueError):
  """A run directory that cannot serve the request (no checkpoint, another model, ...)."""


def short_error(e: Exception) -> str:
  return ' '.join(f'{type(e).__name__}: {e}'.split())[:300]


# --------------------------------------------------------------------------------- fingerprints
def _leaf_fingerprint(x):
  import jax
  import jax.numpy as jnp
  bits = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}.get(x.dtype.itemsize)
  u = (jax.lax.bitcast_convert_type(x, bits) if bits and x.dtype != jnp.bool_ else x)
  u = u.astype(jnp.uint32).reshape(-1)
  w = jnp.arange(u.size, dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1)   # position-weighted
  return jnp.stack([jnp.sum(u, dtype=jnp.uint32), jnp.sum(u * w, dtype=jnp.uint32)])


@functools.lru_cache(maxsize=None)
def _fingerprint_fn(out_sharding) -> Callable:
  """One jitted fingerprint per output sharding: jit's own cache then keys on the tree's shapes, so
  a run's saves trace and compile it once (a fresh ``jax.jit`` per call retraced every save)."""
  import jax
  import jax.numpy as jnp
  return jax.jit(lambda xs: jnp.stack([_leaf_fingerprint(x) for x in xs]),
                 out_shardings=out_sharding)


def fingerprint(tree: Any) -> dict[str, list[int]]:
  """``{leaf path: [sum, weighted sum]}`` of the bits of every leaf (wrapping uint32), on device:
  any changed bit or moved block of a leaf changes it."""
  import jax
  import numpy as np
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  if not leaves:
    return {}
  paths, arrays = zip(*leaves)
  out_sharding = None
  sh = getattr(arrays[0], 'sharding', None)
  if isinstance(sh, jax.sharding.NamedSharding):   # replicated: readable on every process
    out_sharding = jax.sharding.NamedSharding(sh.mesh, jax.sharding.PartitionSpec())
  sums = np.asarray(_fingerprint_fn(out_sharding)(list(arrays)))
  return {jax.tree_util.keystr(p): [int(a), int(b)] for p, (a, b) in zip(paths, sums)}


def check_fingerprint(what: str, tree: Any, want: Optional[dict]) -> None:
  """Raises :class:`CorruptCheckpointError` when ``tree`` differs from its save-time fingerprint."""
  if want is None:
    return
  got = fingerprint(tree)
  bad = [k for k in want if got.get(k) != want[k]] or sorted(set(got) ^ set(want))
  if bad:
    raise CorruptCheckpointError(
        f'checkpoint {what} does not match the fingerprint written when it was saved: '
        f'{len(bad)} arrays differ, first {bad[0]} (the files were changed or damaged after the '
        'save)')


def check_arrays_readable(state_dir: storage.PathLike) -> int:
  """Opens and reads every array of an orbax OCDBT item directory (local or ``gs://``), one at a
  time, with blocking tensorstore calls (no asyncio, no Python callbacks); returns how many.
  Raises what tensorstore raises for a truncated, emptied or garbled file. A directory with no
  OCDBT manifest is left to orbax (0)."""
  import tensorstore as ts
  if not (storage.path(state_dir) / 'manifest.ocdbt').exists():
    return 0
  base = storage.tensorstore_url(state_dir)
  context = ts.Context()
  kvstore = ts.KvStore.open({'driver': 'ocdbt', 'base': base}, context=context).result()
  drivers = {'.zarray': 'zarr', 'zarr.json': 'zarr3'}
  n = 0
  for key in sorted(k.decode() for k in kvstore.list().result()):
    prefix, _, name = key.rpartition('/')
    if name in drivers:
      kv = {'driver': 'ocdbt', 'base': base, 'path': prefix + '/'}
      array = ts.open({'driver': drivers[name], 'kvstore': kv}, read=True, context=context).result()
      array.read().result()
      n += 1
  return n


# ------------------------------------------------------------------------------------ layout
def is_step_dir(p: storage.PathLike) -> bool:
  return (storage.path(p) / 'state').is_dir()


def is_run_checkpoint(p: storage.PathLike) -> bool:
  """A run directory (holding ``checkpoints/``), a ``checkpoints`` directory with saved steps,
  or one saved step (holding ``state/``)."""
  d = storage.path(p)
  if not d.is_dir():
    return False
  if (d / 'checkpoints').is_dir() or is_step_dir(d):
    return True
  return any(c.name.isdigit() and is_step_dir(c) for c in d.iterdir())


def _checkpoints_dir(p: storage.PathLike) -> Any:
  d = storage.path(p)
  return d / 'checkpoints' if (d / 'checkpoints').is_dir() else d


def _read_json(p) -> Optional[dict]:
  try:
    return json.loads(p.read_text()) if p.exists() else None
  except ValueError:
    return None


def saved_steps(ckpt_dir: storage.PathLike) -> dict[int, dict]:
  """``{step: eval metrics}`` of the committed steps of a ``checkpoints`` directory: orbax commits
  a step by renaming its temporary directory (local disks) or by writing ``commit_success.txt``
  last (buckets, which cannot rename atomically); an interrupted save is not listed."""
  from orbax.checkpoint.path import step as step_lib
  out = {}
  d = storage.path(ckpt_dir)
  for c in (d.iterdir() if d.is_dir() else ()):
    if c.name.isdigit() and step_lib.is_path_finalized(c):
      out[int(c.name)] = _read_json(c / 'metrics' / 'metrics') or {}
  return dict(sorted(out.items()))


def pick_step(directory: Any, which: Union[str, int], steps: dict[int, dict]) -> int:
  """'latest', 'best' (highest eval top-1) or a step number -> an existing step of ``steps``
  (``{step: metrics}``); FileNotFoundError naming the steps otherwise."""
  if not steps:
    raise FileNotFoundError(f'no checkpoint in {directory}')
  if which == 'latest':
    return max(steps)
  if which == 'best':
    scored = [s for s, m in steps.items() if BEST_METRIC in (m or {})]
    if not scored:
      raise FileNotFoundError(f'no checkpoint in {directory} has eval metrics (run with '
                              f'--mode=train_and_eval to track the best); steps: {list(steps)}')
    return max(scored, key=lambda s: steps[s][BEST_METRIC])
  try:
    step = int(which)
  except (TypeError, ValueError):
    raise ValueError(f"step must be 'latest', 'best' or a step number, got {which!r}") from None
  if step not in steps:
    raise FileNotFoundError(f'no checkpoint for step {step} in {directory}; steps: {list(steps)}')
  return step


def _step_dir(p: storage.PathLike, which: Union[str, int]) -> tuple[Any, str]:
  """``(step directory, description)`` of ``which`` in a run / checkpoints / step directory."""
  if is_step_dir(p):
    return storage.path(p), str(p)
  ckpt_dir = _checkpoints_dir(p)
  step = pick_step(ckpt_dir, which, saved_steps(ckpt_dir))
  return ckpt_dir / str(step), f'{p} step {step}'


def read_state(step_dir: Any, what: str) -> dict:
  """The stored train state of one step (host numpy), checked for readability and against its
  fingerprint."""
  import orbax.checkpoint as ocp
  try:
    check_arrays_readable(step_dir / 'state')
    tree = ocp.StandardCheckpointer().restore(step_dir / 'state')
  except Exception as e:   # orbax/tensorstore raise many types for a damaged directory
    raise CorruptCheckpointError(f'checkpoint {what} cannot be read ({short_error(e)})') from e
  data = _read_json(step_dir / 'data' / 'metadata') if (step_dir / 'data').is_dir() else None
  want = (data or {}).get(CHECKSUM_KEY)
  if want is not None:   # the weights' leaves (optimizer state is not needed here)
    keep = ('.params', '.batch_stats', '.ema')
    check_fingerprint(what, {k: tree[k] for k in ('params', 'batch_stats', 'ema') if tree.get(k)},
                      {_dict_key(k): v for k, v in want.items() if k.startswith(keep)})
  return tree


def _dict_key(key: str) -> str:
  """A fingerprint key of the saved TrainState (``.params['a']``) as the key of the same leaf in
  the restored dict (``['params']['a']``)."""
  head, dot, rest = key[1:].partition('[')
  return f"['{head}']" + dot + rest


def _variables(tree: dict, use_ema: bool, what: str) -> dict:
  if use_ema and not tree.get('ema'):
    raise RunError(f'{what} has no EMA weights (its run had ema.decay = 0); use the raw weights '
                   "(--weights raw or auto; weights='raw' / use_ema=False).")
  src = tree['ema'] if use_ema else tree
  return {'params': src['params'], 'batch_stats': src.get('batch_stats', {})}


def restore_variables(p: storage.PathLike, which: Union[str, int] = 'latest',
                      use_ema: bool = False) -> dict:
  """``{'params', 'batch_stats'}`` (host numpy) of a run's checkpoint, without its config.

  ``p``: the run's workdir, its ``checkpoints`` directory (``which``: 'latest', 'best' or a
  step), or one step's directory (``which`` ignored). Local or ``gs://``.
  """
  step_dir, what = _step_dir(p, which)
  return _variables(read_state(step_dir, what), use_ema, what)


# --------------------------------------------------------------------------------------- runs
def run_info(workdir: storage.PathLike) -> dict[str, Any]:
  """What a run records about itself: ``model``, ``model_kwargs``, ``num_classes``,
  ``image_size`` (eval), ``mean``, ``std``, ``crop_pct``, ``interpolation``, ``use_ema`` (what
  ``main.py --mode=eval`` evaluates). Needs the run's ``run.json`` (or ``config.json``)."""
  d = storage.path(workdir)
  run = _read_json(d / 'run.json') or {}
  config = _read_json(d / 'config.json') or {}
  resolved = _read_json(d / 'resolved_config.json') or {}
  ident = run.get('identity') or {}
  model = ident.get('model') or config.get('model')
  if not model:
    raise RunError(f'{workdir} is not a ghostnets_jax run directory: it has no run.json or '
                   'config.json naming its model (pass the --workdir of a main.py run).')
  info = {'model': model,
          'model_kwargs': ident.get('model_kwargs', config.get('model_kwargs') or {}),
          'num_classes': ident.get('num_classes', resolved.get('num_classes')),
          'image_size': resolved.get('eval_image_size') or resolved.get('image_size'),
          'use_ema': bool((config.get('eval') or {}).get('use_ema', True))}
  for k in ('mean', 'std'):
    if resolved.get(k):
      info[k] = tuple(resolved[k])
  if resolved.get('eval_crop_pct'):
    info['crop_pct'] = resolved['eval_crop_pct']
  if resolved.get('eval_interpolation'):
    info['interpolation'] = resolved['eval_interpolation']
  return info


def load_run(workdir: storage.PathLike, step: Union[str, int] = 'latest', weights: str = 'auto',
             model: Optional[str] = None) -> tuple[Any, dict]:
  """``(model, variables)`` of a training run: the registry model with the run's classes and
  ``model_kwargs``, and the weights of checkpoint ``step`` ('latest', 'best' or a number).

  ``weights``: 'ema', 'raw', or 'auto' (EMA when the run kept EMA weights and evaluated them,
  as ``main.py --mode=eval`` does). ``model``, if given, must be the run's model.
  """
  from ghostnets_jax.registry import create_model
  if weights not in WEIGHTS:
    raise RunError(f'weights must be one of {WEIGHTS}, got {weights!r}')
  if not is_run_checkpoint(storage.path(workdir) / 'checkpoints'):
    raise RunError(f'no checkpoint in {workdir}/checkpoints: pass the --workdir of a main.py run '
                   'that saved at least one checkpoint.')
  info = run_info(workdir)
  if model is not None and model != info['model']:
    raise RunError(f'{workdir} is a run of {info["model"]}, not {model}: drop --model (the run '
                   f'names its model) or pass --model {info["model"]}.')
  step_dir, what = _step_dir(workdir, step)
  tree = read_state(step_dir, what)
  use_ema = bool(tree.get('ema')) and info['use_ema'] if weights == 'auto' else weights == 'ema'
  variables = _variables(tree, use_ema, what)
  net = create_model(info['model'], num_classes=info['num_classes'] or 1000)
  if info['model_kwargs']:
    net = net.clone(**info['model_kwargs'])
  return net, variables


def load_run_variables(name: str, p: str, *, step: Union[str, int] = 'latest',
                        use_ema: bool = False, **unused) -> dict:
  """The ``load_checkpoint`` loader of runs: the run's own weights (its module overrides are in
  their shapes; ``name`` and other keyword arguments are not needed)."""
  del name, unused
  return restore_variables(p, step, use_ema)
