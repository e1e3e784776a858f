"""Training system: configs in ``configs/``, entry point ``main.py``, library code here.

  trainer.train_and_evaluate(config, workdir, mode)   train (resuming), evaluate, checkpoint
  trainer.evaluate(config, workdir)                    eval of a restored checkpoint

  run_config   config + data + mesh -> RunConfig (every derived value, resolved_config.json)
  experiment   build(config, workdir) -> Experiment (model, data, optimizer, jitted steps, ...)
  guards       StopSignal (preemption) and NonFiniteGuard, polled by the loop
  evaluators   extra evaluations by name (config.eval.evaluators), e.g. retrieval
"""
from ghostnets_jax.train.evaluators import register_evaluator
from ghostnets_jax.train.trainer import evaluate, train_and_evaluate

__all__ = ['evaluate', 'register_evaluator', 'train_and_evaluate']
