"""Input pipeline: TFDS record sources, preprocessing ops, samplers, train/eval iterators."""
from ghostnets_jax.data.datasets import DatasetNotFoundError, Source, open_source, prepare
from ghostnets_jax.data.pipeline import (Position, ShuffleSampler, TrainIterator, eval_dataset,
                                         make_sampler, register_sampler)
from ghostnets_jax.data.preprocess import compose, eval_spec, register_op, train_spec

__all__ = ['DatasetNotFoundError', 'Position', 'ShuffleSampler', 'Source', 'TrainIterator',
           'compose', 'eval_dataset', 'eval_spec', 'make_sampler', 'open_source', 'prepare',
           'register_op', 'register_sampler', 'train_spec']
