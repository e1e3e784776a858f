"""Which run a workdir holds: ``run.json``, written when a run starts, and the guard that refuses
to resume (or evaluate) it with another model or config.

``run.json`` records the run's identity and the shape of its train state:

* identity (:func:`identity`): the model, its ``model_kwargs``, the number of classes and, for
  training, the data (``source:dataset`` or the train folder). A difference is refused unless
  ``config.resume='force'``: continuing ghostnet_100's checkpoint as another model, or on
  another dataset, would silently be a different experiment.
* state signature (:func:`state_signature`): every array of the train state (params, BN
  statistics, optimizer state, EMA) as ``path -> dtype[shape]``. A difference is always refused:
  the checkpoint cannot be restored into that state (to start from its weights, fine-tune with
  ``--config.init.checkpoint=<workdir>``).

Everything else may change between restarts (``num_train_steps``/``num_epochs`` to extend a run,
lr, schedule, augmentation, logging, checkpoint and eval settings, data_dir, threads, dtype).
"""
from __future__ import annotations

import json
import logging
from typing import Any, Optional

import jax
import ml_collections

from ghostnets_jax import storage
from ghostnets_jax.errors import ConfigError, UserError

RUN_FILE = 'run.json'
RESUME = ('auto', 'force')


class RunMismatchError(UserError, ValueError):
  """The workdir holds a run of another model or config."""


class NoRunError(UserError, FileNotFoundError):
  """The workdir holds no checkpoint of a training run (e.g. a mistyped --workdir)."""


def identity(config: ml_collections.ConfigDict, num_classes: int, train: bool) -> dict[str, Any]:
  """The fields that say which run this is (``data`` only when training)."""
  out = {'model': config.model,
         'model_kwargs': json.loads(json.dumps(config.model_kwargs.to_dict(), sort_keys=True)),
         'num_classes': int(num_classes)}
  if train:
    d = config.data
    out['data'] = (f'folder:{d.train_dir}' if d.get('source', 'tfds') == 'folder'
                   else f'tfds:{d.dataset}')
  return out


def _key(entry) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def state_signature(abstract: Any) -> dict[str, str]:
  """``{'params/stem/conv/kernel': 'float32[3, 3, 3, 16]', ...}`` of a train state (abstract or
  concrete); independent of the mesh and of the JAX version's key formatting."""
  return {'/'.join(_key(k) for k in path): f'{leaf.dtype}{list(leaf.shape)}'
          for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]}


def read(workdir: str) -> Optional[dict]:
  path = storage.path(workdir) / RUN_FILE
  if not path.exists():
    return None
  return json.loads(path.read_text())


def _state_diff(run: dict[str, str], now: dict[str, str], limit: int = 3) -> str:
  only_run = [k for k in run if k not in now]
  only_now = [k for k in now if k not in run]
  shape = [f'{k}: run {run[k]}, config {now[k]}' for k in run if k in now and run[k] != now[k]]
  parts = []
  for what, items in (('only in the run', only_run), ('only in this config', only_now),
                      ('with another shape or dtype', shape)):
    if items:
      parts.append(f'{len(items)} {what} ({"; ".join(items[:limit])}'
                   f'{", ..." if len(items) > limit else ""})')
  return ', '.join(parts)


def check(workdir: str, ident: dict[str, Any], signature: dict[str, str], *, has_checkpoints: bool,
          resume: str = 'auto', action: str = 'resume') -> bool:
  """Raises :class:`RunMismatchError` when the workdir holds checkpoints of a run that
  ``run.json`` describes as another; returns True when ``run.json`` should be (re)written (a new
  run, no record yet, or differences accepted with ``resume='force'``)."""
  if resume not in RESUME:
    raise ConfigError(f"config.resume must be one of {RESUME} ('force': resume a run of another "
                     f'model/config), got {resume!r}.')
  run = read(workdir) if has_checkpoints else None
  if run is None:
    return True
  fields = {k: (run.get('identity', {}).get(k), v) for k, v in ident.items()
            if k in run.get('identity', {}) and run['identity'][k] != v}
  state = _state_diff(run.get('state', {}), signature) if run.get('state') else ''
  if not fields and not state:
    return False
  old = run.get('identity', {})
  head = (f'{workdir} holds a run of {old.get("model")} ({old.get("num_classes")} classes); '
          f'this config is {ident["model"]} ({ident["num_classes"]} classes). ')
  listed = '; '.join(f'{k}: run {a!r}, config {b!r}' for k, (a, b) in fields.items())
  if state:
    raise RunMismatchError(
        f'{head}Cannot {action} it: the train state differs ({state})'
        f'{"; differing fields: " + listed if listed else ""}. Nothing in the workdir was changed. '
        'Use another --workdir for a new run, or start one from this run\'s weights with '
        f'--config.init.checkpoint={workdir} (fine-tuning; a different head is re-initialised).')
  if resume != 'force':
    raise RunMismatchError(
        f'{head}Refusing to {action} it with this config: {listed}. Nothing in the workdir was '
        'changed. Use another --workdir for a new run, or pass --config.resume=force to '
        f'{action} this checkpoint with this config anyway.')
  logging.warning('config.resume=force: %s %s despite: %s', action, workdir, listed)
  return True


def write(workdir: str, ident: dict[str, Any], signature: dict[str, str]) -> None:
  """Writes ``run.json`` (process 0); a previous record is kept under ``previous``."""
  if jax.process_index() != 0:
    return
  old = read(workdir)
  record = {'identity': ident, 'state': signature}
  if old is not None and old.get('identity') != ident:
    record['previous'] = old.get('previous', []) + [old.get('identity')]
  storage.write_text(storage.path(workdir) / RUN_FILE, json.dumps(record, indent=1, sort_keys=True))
