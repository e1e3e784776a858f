"""Cached exports shared by the export tests (keep users of one model in one xdist group)."""
from __future__ import annotations

import fnmatch
import functools
import os
import re

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import ghostnets_jax as gj
from ghostnets_jax.export import export_onnx
from ghostnets_jax.export import rewrites
from tests.helpers import SMALL, jitted_apply, model_and_variables

# Models the MindSpore route is tested on, as they get registered.
MINDSPORE_MODELS = ('ghostnet_100', 'ghostnetv2_100', 'repghostnet_100', 'g_ghost_regnetx_032')
# Models exported at every width (re-parameterization differs per width), as they get registered.
ALL_WIDTHS = ('repghostnet_*',)


def export_cases() -> list[str]:
  """One model per architecture (family and name stem, widths dropped) plus every :data:`ALL_WIDTHS`
  model; every registered model with GHOSTNETS_EXPORT_ALL=1."""
  names = gj.list_models()
  if os.environ.get('GHOSTNETS_EXPORT_ALL'):
    return names
  picked: dict = {n: n for n in names if any(fnmatch.fnmatch(n, p) for p in ALL_WIDTHS)}
  for name in names:
    key = (gj.get_spec(name).family, re.sub(r'_\d+(x\d+)?$', '', name))
    current = picked.get(key)
    # prefer the 1.0-width variant (``_100``), else the first name
    if current is None or (name.endswith('_100') and not current.endswith('_100')):
      picked[key] = name
  return sorted(set(picked.values()))


def mindspore_cases() -> list[str]:
  return [m for m in MINDSPORE_MODELS if m in gj.list_models()]


@functools.lru_cache(maxsize=None)
def exported(name: str, layout: str = 'NCHW') -> onnx.ModelProto:
  """Deploy-form ONNX of the cached random-weight model at SMALL x SMALL."""
  model, variables = model_and_variables(name)
  return export_onnx(model, variables, SMALL, layout=layout)


def jax_logits(name: str):
  """NHWC images -> logits of the cached train-form model, run in batches of 2.

  Batch 2 is the shape the registry-wide tests compile, so the persistent compilation cache
  usually has it already.
  """
  model, variables = model_and_variables(name)
  fn = jitted_apply(model)

  def run(x):
    pad = (-len(x)) % 2
    xp = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
    out = np.concatenate([np.asarray(fn(variables, xp[i:i + 2])) for i in range(0, len(xp), 2)])
    return out[:len(x)]
  return run


def graph(nodes, x_shape, y_shape=None, inits=(), opset: int = 23) -> onnx.ModelProto:
  """A checked one-input (``x``), one-output (``y``) model; ``inits``: name -> numpy array.

  ``y_shape=None`` takes the output shape from ONNX shape inference.
  """
  g = helper.make_graph(
      nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, x_shape)],
      [helper.make_tensor_value_info('y', TensorProto.FLOAT, y_shape)],
      [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
  m = helper.make_model(g, opset_imports=[helper.make_opsetid('', opset)])
  if y_shape is None:
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    m.graph.output[0].CopyFrom(inferred.graph.output[0])
  onnx.checker.check_model(m, full_check=True)
  return rewrites.infer_shapes(m)


def images(*shape, seed: int = 0) -> np.ndarray:
  return np.random.RandomState(seed).randn(*shape).astype(np.float32)


@functools.lru_cache(maxsize=None)
def lowered_op_counts(name: str) -> dict[str, int]:
  """Primitive counts of the deploy model traced under ``export_lowering`` (what the ONNX graph
  should mirror): grouped convolutions and channel slices the architecture itself has."""
  import jax
  import jax.numpy as jnp
  from ghostnets_jax.layers import export_lowering
  model, variables = model_and_variables(name)
  model, variables = gj.reparameterize(model, variables)
  with export_lowering():
    jaxpr = jax.make_jaxpr(lambda x: model.apply(variables, x, train=False))(
        jnp.zeros((1, SMALL, SMALL, model.in_chans)))
  counts = {'grouped_conv': 0, 'slice': 0}

  def walk(jx):
    for eqn in jx.eqns:
      if eqn.primitive.name == 'conv_general_dilated' and eqn.params['feature_group_count'] > 1:
        counts['grouped_conv'] += 1
      if eqn.primitive.name in ('slice', 'dynamic_slice'):
        counts['slice'] += 1
      for sub in jax.core.jaxprs_in_params(eqn.params):
        walk(sub)
  walk(jaxpr.jaxpr)
  return counts
