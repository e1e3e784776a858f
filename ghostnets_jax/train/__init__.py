"""Training system: configs in ``configs/``, entry point ``main.py``, library code here.

  trainer.train_and_evaluate(config, workdir, mode)   train (resuming), evaluate, checkpoint
  trainer.evaluate(config, workdir)                    eval of a restored checkpoint

  run_config   config + data + mesh -> RunConfig (every derived value, resolved_config.json)
  experiment   build(config, workdir) -> Experiment (model, data, optimizer, jitted steps, ...)
  guards       StopSignal (preemption) and NonFiniteGuard, polled by the loop
  evaluators   extra evaluations by name (config.eval.evaluators), e.g. retrieval
"""
import importlib

__all__ = ['evaluate', 'register_evaluator', 'train_and_evaluate']
_HOMES = {'evaluate': 'trainer', 'train_and_evaluate': 'trainer', 'register_evaluator': 'evaluators'}


def __getattr__(name: str):
  # Resolved on first use, so that importing the step, optimizer or model assembly alone
  # (``from ghostnets_jax.train import step``) does not load the input pipeline's TensorFlow.
  if name in _HOMES:
    return getattr(importlib.import_module(f'{__name__}.{_HOMES[name]}'), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
