"""Model statistics without running the model: parameters, MACs and activations.

MACs and activations come from our own counter: it intercepts every ``Conv2d`` and
``nn.Dense`` call while the model is traced abstractly (``jax.eval_shape``, nothing is computed)
and sums ``output elements x kernel fan-in``. Like the RepGhost/thop convention, only
convolutions and fully connected layers count (no BN, activations, pooling or elementwise
ops). Activations are the conv/linear output elements (Radosavovic et al.), which the
G-GhostNet paper uses as a GPU latency proxy. The same trace gives the backbone's feature
channels: the counter also keeps the model's :class:`~ghostnets_jax.models.backbone.StridePlan`,
which records every feature level during the forward pass.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ghostnets_jax.layers.conv import Conv2d, channels, conv_kernels, to_pair


@dataclasses.dataclass
class ModelStats:
  params: int
  macs: int
  activations: int
  feature_channels: dict[int, int] = dataclasses.field(default_factory=dict)


def param_count(variables: Any) -> int:
  """Number of trainable parameters (the ``params`` collection)."""
  tree = variables.get('params', variables) if isinstance(variables, dict) else variables
  return int(sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def count_stats(model: nn.Module, input_shape: tuple[int, ...]) -> ModelStats:
  """Counts params, MACs and activations of ``model`` for one input of ``input_shape`` (NHWC)."""
  counts = {'macs': 0, 'acts': 0}
  plans = []  # (depth in the module tree, StridePlan) of every backbone traced

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == 'stride_plan':
      plans.append((len(context.module.scope.path), out))
    if context.method_name != '__call__':
      return out
    mod = context.module
    if isinstance(mod, Conv2d):
      kh, kw = to_pair(mod.kernel_size)
      cin = channels(args[0])
      per_out = kh * kw * cin // mod.groups
      n = math.prod(out.shape[1:])
      counts['macs'] += n * per_out
      counts['acts'] += n
    elif isinstance(mod, nn.Dense):
      n = math.prod(out.shape[1:])
      counts['macs'] += n * args[0].shape[-1]
      counts['acts'] += n
    return out

  def init(x):
    with nn.intercept_methods(interceptor):
      return model.init(jax.random.PRNGKey(0), x, train=False)

  with conv_kernels('native'):  # shapes only: one op per conv traces faster
    variables = jax.eval_shape(init, jax.ShapeDtypeStruct((1,) + tuple(input_shape), jnp.float32))
  feature_channels = {}
  if plans:  # the outermost backbone (MultiGrain's trunk is one level down)
    feature_channels = {s: x.shape[-1]
                        for s, x in min(plans, key=lambda p: p[0])[1].features().items()}
  return ModelStats(params=param_count(variables), macs=counts['macs'], activations=counts['acts'],
                    feature_channels=feature_channels)


@functools.lru_cache(maxsize=None)
def _info(name: str, deploy: bool) -> dict[str, Any]:
  from ghostnets_jax.registry import create_model, get_spec
  spec = get_spec(name)
  model = create_model(name)
  if deploy:
    model = model.clone(deploy=True)
  s = count_stats(model, (spec.input_size, spec.input_size, 3))
  return {
      'name': name, 'family': spec.family, 'input_size': spec.input_size,
      'crop_pct': spec.crop_pct, 'interpolation': spec.interpolation,
      'mean': spec.mean, 'std': spec.std,
      'params': s.params, 'macs': s.macs, 'activations': s.activations,
      'feature_channels': s.feature_channels,
      'paper': spec.paper, 'paper_url': spec.paper_url,
      'top1': spec.top1, 'top1_source': spec.top1_source, 'reference': spec.reference,
  }


def model_info(name: str, deploy: bool = False) -> dict[str, Any]:
  """Default input size, params, MACs and activations at that size, paper and published top-1,
  and ``feature_channels``: ``{stride: channels}`` of ``model.features`` (the backbone levels).

  ``deploy=True`` counts the re-parameterized (BN-folded, single-branch) form.
  """
  info = dict(_info(name, deploy))
  info['feature_channels'] = dict(info['feature_channels'])  # the cached dict stays unchanged
  return info
