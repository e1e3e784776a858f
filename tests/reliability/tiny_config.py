"""The tiny-GhostNet config of the reliability tests as a config file for ``main.py``:

  python main.py --config=tests/reliability/tiny_config.py --workdir=DIR --config.num_train_steps=6
"""
from __future__ import annotations

from tests.train_helpers import tiny_config

# Shared by every reliability run: 6 steps, a checkpoint after each (keep all), EMA on.
RUN = {'num_train_steps': 6, 'checkpoint.every_steps': 1, 'checkpoint.keep': 10,
       'checkpoint.keep_best': 0, 'ema.decay': 0.9, 'log_every_steps': 1}


def get_config(arg: str | None = None):
  del arg
  return tiny_config(**RUN)
