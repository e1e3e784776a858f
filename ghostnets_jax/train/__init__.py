"""Training system: configs in ``configs/``, entry point ``main.py``, library code here.

  trainer.train_and_evaluate(config, workdir, mode)   train (resuming), evaluate, checkpoint
  trainer.evaluate(config, workdir)                    eval of a restored checkpoint
"""
from ghostnets_jax.train.evaluators import register_evaluator
from ghostnets_jax.train.trainer import evaluate, train_and_evaluate

__all__ = ['evaluate', 'register_evaluator', 'train_and_evaluate']
