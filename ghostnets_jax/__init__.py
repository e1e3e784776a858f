"""ghostnets_jax: the Ghost family of efficient CNNs in JAX/Flax.

Public API::

  ghostnets_jax.list_models(pattern='*')
  ghostnets_jax.create_model(name, num_classes=1000, **overrides)
  ghostnets_jax.model_info(name)
  ghostnets_jax.reparameterize(model, variables)
  ghostnets_jax.convert.from_torch(name, state_dict)
  ghostnets_jax.load_run(workdir, step='latest', weights='auto')   # (model, variables) of a run
"""
from ghostnets_jax import convert
from ghostnets_jax import models  # noqa: F401  (importing the model files registers every model)
from ghostnets_jax.convert import load_run
from ghostnets_jax.layers.fusion import fold_bn, merge_branches, pad_kernel
from ghostnets_jax.registry import create_model, get_spec, list_models
from ghostnets_jax.reparam import reparameterize
from ghostnets_jax.complexity import model_info

__version__ = '0.1.0'
__all__ = ['convert', 'create_model', 'fold_bn', 'get_spec', 'list_models', 'load_run',
           'merge_branches', 'model_info', 'pad_kernel', 'reparameterize']
