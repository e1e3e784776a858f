"""Train or evaluate a model of the registry.

  python main.py --config=configs/g_ghost_regnet.py:demo --workdir=/tmp/demo
  python main.py --config=configs/repghost.py:repghostnet_150 --workdir=gs://bucket/run \
      --config.data.data_dir=gs://bucket/tfds --config.batch_size=2048
  python main.py --config=configs/ghostnet.py --workdir=/tmp/run --mode=eval \
      --config.eval.checkpoint=best

Rerunning the same command resumes from the latest checkpoint in --workdir.
"""
from __future__ import annotations

import os
import sys
import tempfile

from absl import app, flags, logging

# Workdir safety: importing TensorFlow imports Keras, which writes ~/.keras/keras.json and builds
# matplotlib's font cache in ~/.cache. Both go to a private directory removed at exit, so a run
# writes only to --workdir and the TFDS data_dir (unless the user set these variables).
_SCRATCH = tempfile.TemporaryDirectory(prefix='ghostnets_jax-')
for _var, _sub in (('KERAS_HOME', 'keras'), ('MPLCONFIGDIR', 'matplotlib')):
  os.environ.setdefault(_var, os.path.join(_SCRATCH.name, _sub))
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file, optionally with a variant: '
                                'configs/<family>.py:<model or demo>.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and config.json.')
flags.DEFINE_enum('mode', 'train_and_eval', ['train', 'eval', 'train_and_eval'], 'What to run.')
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietLibraries(logging.logging.Filter):
  """Keeps orbax's per-save INFO chatter and gcsfs' per-request warnings (e.g. about bucket types
  it cannot look up on an emulator) out of the console; errors still pass."""

  def filter(self, record) -> bool:
    if '/gcsfs/' in record.pathname or '/fsspec/' in record.pathname:
      return record.levelno >= logging.logging.ERROR
    return record.levelno >= logging.logging.WARNING or '/orbax/' not in record.pathname


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing; a bad ``--config.<field>=`` override exits naming the field and the fix."""
  from ghostnets_jax.train import cli
  try:
    return cli.parse_flags(argv, FLAGS)
  except cli.ConfigOverrideError as e:
    _exit_with(e)
  except flags.Error as e:   # printed as absl's own parser does
    sys.stderr.write(f'FATAL Flags parsing error: {e}\nPass --helpshort or --helpfull to see help '
                     'on flags.\n')
    sys.exit(1)


def _exit_with(error: Exception) -> None:
  """A user error (bad config, path, data, workdir): its message alone, exit status 2."""
  from ghostnets_jax import errors
  sys.stderr.write(f'error: {error}\n')
  sys.exit(errors.EXIT_CODE)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_QuietLibraries())
  from ghostnets_jax.errors import UserError
  from ghostnets_jax import hostmem
  try:   # before any thread allocates: TensorFlow's and XLA's pools keep the arena they start on
    if hostmem.configure(FLAGS.config.get('host_memory', 'default')):
      logging.info('host memory: freed blocks are kept for reuse (config.host_memory)')
  except UserError as e:
    _exit_with(e)
  from ghostnets_jax.train import mesh, trainer   # after flag parsing: imports jax / tf
  import tensorflow as tf
  tf.config.set_visible_devices([], 'GPU')        # tf.data only: keep TensorFlow off the GPUs
  try:
    mesh.initialize_distributed(FLAGS.config)
    import jax
    logging.info('JAX process %d/%d, %d devices (%s)', jax.process_index(), jax.process_count(),
                 jax.device_count(), jax.default_backend())
    if FLAGS.mode == 'eval':
      trainer.evaluate(FLAGS.config, FLAGS.workdir)
    else:
      trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir, FLAGS.mode)
  except UserError as e:   # what the user can fix: one message naming it; bugs keep a traceback
    _exit_with(e)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
