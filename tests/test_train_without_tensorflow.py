"""The training step, the optimizer and the model assembly import and trace without TensorFlow.

GPU images built for JAX (and PyTorch) usually lack TensorFlow, which only the input pipeline
needs. ``benchmarks/train_step.py`` and a user's own loop (``from ghostnets_jax.train import step,
optim, experiment``) must run there: a child process with ``tensorflow`` and
``tensorflow_datasets`` made unimportable builds the trainer's step for a model from a config and
traces one full step (forward, backward, SGD, EMA, mixup) with ``jax.eval_shape``.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent('''
  import sys
  for m in ('tensorflow', 'tensorflow_datasets'):
    sys.modules[m] = None        # import tensorflow -> ImportError

  import jax, jax.numpy as jnp
  from configs import default
  from ghostnets_jax.train import experiment, optim, run_config, state as state_lib, step as step_lib

  c = default.get_config()
  default.override(c, {'model': 'ghostnet_050', 'batch_size': 2, 'image_size': 32,
                       'aug.mixup_alpha': 0.8, 'aug.cutmix_alpha': 1.0, 'ema.decay': 0.999,
                       'label_smoothing': 0.1})
  model = experiment.build_model(c, 10)
  schedule = optim.make_schedule(c, steps_per_epoch=10, total_steps=100)
  tx = optim.make_optimizer(c, schedule)
  cfg = run_config.step_config(c, 10)
  abstract = state_lib.abstract_state(model, tx, 32, True, step_lib.get_loss(c.loss).init_params)
  batch = {'image': jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32),
           'label': jax.ShapeDtypeStruct((2,), jnp.int32),
           'image_id': jax.ShapeDtypeStruct((2,), jnp.int32)}
  new_state, metrics = jax.eval_shape(step_lib.make_train_step(model, tx, cfg, schedule),
                                      abstract, batch)
  same = jax.tree.map(lambda a, b: a.shape == b.shape and a.dtype == b.dtype, abstract, new_state)
  assert all(jax.tree.leaves(same)), same
  assert metrics.loss.total.shape == (), metrics
  heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets')
                 and sys.modules[m] is not None)
  print('OK', heavy)
''')


def test_train_step_builds_and_traces_without_tensorflow():
  env = {**os.environ, 'PYTHONPATH': str(ROOT), 'JAX_PLATFORMS': 'cpu'}
  p = subprocess.run([sys.executable, '-c', CHILD], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=600)
  assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
  assert p.stdout.strip().splitlines()[-1] == 'OK []', p.stdout[-2000:]


def test_package_level_names_of_the_training_system_still_resolve():
  import ghostnets_jax.train as train
  from ghostnets_jax.train import evaluators, trainer
  assert train.train_and_evaluate is trainer.train_and_evaluate
  assert train.evaluate is trainer.evaluate
  assert train.register_evaluator is evaluators.register_evaluator
  try:
    train.no_such_name
  except AttributeError as e:
    assert 'no_such_name' in str(e)
  else:
    raise AssertionError('an unknown attribute must raise AttributeError')
