"""The training loop: ``train_and_evaluate(config, workdir)`` and ``evaluate(config, workdir)``.

``main.py`` only parses flags and calls these. :func:`ghostnets_jax.train.experiment.build`
assembles the run (derived values in :mod:`ghostnets_jax.train.run_config`, written to
``workdir/resolved_config.json``); the loop feeds it batches, logs one line per log step (the
same values go to TensorBoard once), evaluates, checkpoints, and stops on a signal or on a
non-finite step (:mod:`ghostnets_jax.train.guards`).
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

import jax
import ml_collections
from clu import periodic_actions

from ghostnets_jax import storage
from ghostnets_jax.errors import ConfigError
from ghostnets_jax.train import mesh as mesh_lib
from ghostnets_jax.train import state as state_lib, summary
from ghostnets_jax.train import workdir as workdir_lib
from ghostnets_jax.train.checkpoint import BEST_METRIC, is_run_checkpoint
from ghostnets_jax.train.experiment import Experiment, build, write_configs
from ghostnets_jax.train.guards import NonFiniteGuard, StopSignal


def _eval_variables(state: state_lib.TrainState) -> list[tuple[str, dict]]:
  """[(prefix, variables)]: raw weights, and EMA weights when EMA is on."""
  out = [('', state.variables(False))]
  if state.ema:
    out.append(('ema_', state.variables(True)))
  return out


def _log_train(exp: Experiment, writer, step: int, train_metrics, seconds: float,
               steps: int) -> dict[str, float]:
  """The log step: the train scalars to TensorBoard, and one line to the console."""
  c, r = exp.config, exp.resolved
  scalars = {f'train/{k}': float(v) for k, v in train_metrics.compute().items()}
  sps = steps / max(seconds, 1e-9)
  scalars.update({'train/steps_per_sec': sps, 'train/images_per_sec': sps * c.batch_size,
                  'train/epoch': step / r.steps_per_epoch})
  writer.write_scalars(step, scalars)
  writer.flush()   # a bucket workdir gets the events now (see train/summary.py)
  logging.info('step %d/%d  loss %.4f  top1 %.4f  lr %.4g  %.2f steps/s  %.0f img/s  ETA %s',
               step, r.total_steps, scalars['train/loss'], scalars['train/top1'],
               scalars['train/lr'], sps, sps * c.batch_size,
               _eta((r.total_steps - step) / max(sps, 1e-9)))
  return scalars


def _evaluate_state(exp: Experiment, writer, step: int, state) -> dict[str, float]:
  """Eval metrics of the raw and (when on) EMA weights, written once and logged in one line."""
  res = {}
  for prefix, variables in _eval_variables(state):
    out = exp.evaluate(variables, f'eval {prefix or "raw"}')
    res.update({f'{prefix}{k}': v for k, v in out.items()})
  writer.write_scalars(step, {f'eval/{k}': v for k, v in res.items()})
  logging.info('eval at step %d: %s', step, _fmt(res))
  return res


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       mode: str = 'train_and_eval') -> dict[str, float]:
  """Trains (resuming from ``workdir`` when it holds checkpoints) and evaluates.

  Returns the last eval metrics (``top1``, ``top5``, ``loss`` and ``ema_*``), or the last train
  metrics with ``mode='train'``.
  """
  if mode not in ('train', 'train_and_eval'):
    raise ConfigError(f'mode must be train or train_and_eval, got {mode!r}')
  exp = build(config, workdir, train=True)
  c, r = exp.config, exp.resolved
  if mode == 'train_and_eval' and exp.eval_source is None:
    raise ConfigError('--mode=train_and_eval needs evaluation data: set config.data.eval_split '
                      '(TFDS) or config.data.eval_dir (data.source=folder), or use --mode=train.')
  write_configs(exp)
  writer, logdir = summary.create_writer(workdir, events=jax.process_index() == 0)
  train_iter = exp.train_iterator()
  start = exp.checkpointer.latest_step()
  if start is not None:
    start, state, data_state = exp.restore('latest', quarantine=True)
    train_iter.set_state(data_state)
    skipped = int(data_state.get('nonfinite_skipped', 0))
    logging.info('resumed at step %d (input position %s)', start, data_state)
  else:
    start, state, skipped = 0, exp.init_state(), 0
    writer.write_hparams(_flat(c.to_dict()))
  total = r.total_steps
  logging.info('training %s for %d steps (%d/epoch), global batch %d on %d devices, lr %.4g',
               c.model, total, r.steps_per_epoch, c.batch_size, r.devices, r.lr)
  profile = None
  if c.profile.start_step >= 0 and jax.process_index() == 0:
    profile = periodic_actions.Profile(logdir=logdir, first_profile=c.profile.start_step,
                                       num_profile_steps=c.profile.num_steps)
  train_metrics, last_eval, last_train = None, {}, {}
  t_log, s_log = time.time(), start
  stop = min(total, c.stop_after_step) if c.stop_after_step > 0 else total
  signals = StopSignal(exp.mesh)
  guard = NonFiniteGuard(c.on_nonfinite, skipped)
  for step in range(start + 1, stop + 1):
    with jax.profiler.StepTraceAnnotation('train', step_num=step):
      batch = mesh_lib.global_batch(next(train_iter), exp.batch_sharding)
      if step == start + 1:
        logging.info('input batch: %s', mesh_lib.describe_batch(batch))
      state, m = exp.train_step(state, batch)
    guard.add(step, m)
    train_metrics = m if train_metrics is None else train_metrics.merge(m)
    if profile is not None:
      profile(step)
    if step % c.log_every_steps == 0 or step == total:
      guard.check(exp.checkpointer)
      last_train = _log_train(exp, writer, step, train_metrics, time.time() - t_log, step - s_log)
      train_metrics, t_log, s_log = None, time.time(), step
    metrics = None
    if mode == 'train_and_eval' and (step % r.eval_every == 0 or step == total):
      last_eval = _evaluate_state(exp, writer, step, state)
      key = f'ema_{BEST_METRIC}' if state.ema and c.eval.use_ema else BEST_METRIC
      metrics = {BEST_METRIC: last_eval[key]}
    stopping = signals.requested()   # the same answer on every process
    if step % r.checkpoint_every == 0 or step == stop or stopping:
      guard.check(exp.checkpointer)
      data_state = train_iter.get_state()
      if guard.skipped:
        data_state['nonfinite_skipped'] = guard.skipped
      exp.checkpointer.save(step, state, data_state, metrics)
    if stopping:
      logging.warning('stopped at step %d on a signal; rerun the same command to resume', step)
      break
  signals.restore()
  guard.check(exp.checkpointer)
  exp.checkpointer.wait()
  writer.close()
  exp.checkpointer.close()
  return last_train if mode == 'train' else last_eval


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Restores ``config.eval.checkpoint`` ('latest', 'best' or a step) from ``workdir`` and
  evaluates its EMA (``config.eval.use_ema`` and the run had EMA) or raw weights."""
  storage.check_reachable(workdir, '--workdir')
  if not is_run_checkpoint(storage.path(workdir) / 'checkpoints'):
    raise workdir_lib.NoRunError(
        f'no checkpoint in {workdir}/checkpoints: --mode=eval evaluates a checkpoint of a '
        "training run; pass that run's --workdir (nothing was created).")
  exp = build(config, workdir, train=False)
  c = exp.config
  step, state, _ = exp.restore(c.eval.checkpoint)
  use_ema = bool(c.eval.use_ema and state.ema)
  res = exp.evaluate(state.variables(use_ema), f'eval step {step}')
  res.update(step=step, weights='ema' if use_ema else 'raw')
  logging.info('eval of %s step %d (%s weights): %s', workdir, step, res['weights'], _fmt(res))
  if jax.process_index() == 0:
    storage.write_text(storage.path(workdir) / f'eval_step{step}_{res["weights"]}.json',
                       json.dumps(res, indent=2))
  exp.checkpointer.close()
  return res


def _flat(d: dict, prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v if isinstance(v, (int, float, str, bool)) else str(v)
  return out


def _fmt(m: dict) -> str:
  return '  '.join(f'{k} {v:.4f}' if isinstance(v, float) else f'{k} {v}' for k, v in m.items())


def _eta(seconds: float) -> str:
  s = int(seconds)
  return f'{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}'
