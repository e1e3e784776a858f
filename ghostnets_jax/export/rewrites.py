"""ONNX graph passes: pure functions ``ModelProto -> ModelProto`` (the input is never modified).

* :func:`ort_optimize` — onnxruntime's provider-independent (basic) optimisations, saved back as
  standard ONNX: constant folding, Conv+Add/Mul fusion, transposes pushed through and cancelled
  (jax2onnx wraps every NHWC convolution in a pair of them).
* :func:`fix_batch_size` — a static batch size (``converter_lite`` and MindSpore need one for
  grouped convolutions); with :func:`ort_optimize` it folds away all shape arithmetic.
* :func:`decompose_hardswish` — ``HardSwish(x)`` as ``x * HardSigmoid(x)``.
* :func:`split_padded_avgpool` — a padded ``AveragePool`` as ``Pad`` + VALID ``AveragePool``
  (times a constant count correction where padding is not counted).
* :func:`nearest_gathers_to_resize` — constant-index ``Gather`` pairs that upsample (nearest,
  PyTorch's ``floor(i * in / out)``) as one ``Resize``: runtimes gather element by element but
  have fast resize kernels (about 15x faster in onnxruntime 1.32 on GhostNetV2's attention).
* :func:`channel_slices_to_conv` — ``Slice``/``Split``/``Gather`` along channels of an NCHW tensor
  as 1x1 convolutions with 0/1 selection kernels: slicing is slow on Ascend's Da Vinci cores
  (GhostNets_D), a 1x1 convolution runs on the cube unit.

Every pass keeps the outputs equal (tested with onnxruntime).
"""
from __future__ import annotations

import os
import tempfile
from typing import Iterable, Optional, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ghostnets_jax.errors import UserError


class GraphRewriteError(UserError, ValueError):
  """A graph pass cannot be applied to this model."""


# ----------------------------------------------------------------------------------------------
# Reading a graph


def constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
  """Initializers and ``Constant`` node outputs of the main graph, as numpy arrays."""
  out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
  for node in model.graph.node:
    if node.op_type == 'Constant':
      for a in node.attribute:
        if a.name == 'value':
          out[node.output[0]] = numpy_helper.to_array(a.t)
        elif a.name in ('value_float', 'value_int'):
          out[node.output[0]] = np.array(helper.get_attribute_value(a),
                                         np.float32 if a.name == 'value_float' else np.int64)
        elif a.name in ('value_floats', 'value_ints'):
          out[node.output[0]] = np.array(helper.get_attribute_value(a),
                                         np.float32 if a.name == 'value_floats' else np.int64)
  return out


def shapes(model: onnx.ModelProto) -> dict[str, tuple]:
  """Known shapes of graph values (``None`` for symbolic dimensions); run :func:`infer_shapes` first."""
  out = {}
  for v in (*model.graph.input, *model.graph.value_info, *model.graph.output):
    t = v.type.tensor_type
    if t.HasField('shape'):
      out[v.name] = tuple(d.dim_value if d.HasField('dim_value') else None for d in t.shape.dim)
  for t in model.graph.initializer:
    out[t.name] = tuple(t.dims)
  return out


def attributes(node: onnx.NodeProto) -> dict:
  return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
  """Clears stale ``value_info`` and re-runs strict shape inference (with data propagation)."""
  m = onnx.ModelProto()
  m.CopyFrom(model)
  del m.graph.value_info[:]
  return onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True, data_prop=True)


class _Names:
  """Fresh value/node names that do not clash with the graph's."""

  def __init__(self, model: onnx.ModelProto):
    g = model.graph
    self.used = {n for node in g.node for n in (*node.input, *node.output, node.name)}
    self.used |= {t.name for t in g.initializer} | {v.name for v in (*g.input, *g.output)}

  def __call__(self, base: str) -> str:
    i, name = 0, base
    while name in self.used:
      i += 1
      name = f'{base}_{i}'
    self.used.add(name)
    return name


def _rebuild(model: onnx.ModelProto, nodes: Sequence[onnx.NodeProto],
             initializers: Iterable[onnx.TensorProto] = ()) -> onnx.ModelProto:
  m = onnx.ModelProto()
  m.CopyFrom(model)
  needed = {o.name for o in m.graph.output}
  live = []
  for node in reversed(list(nodes)):  # drop nodes whose outputs nothing uses
    if any(o in needed for o in node.output):
      live.append(node)
      needed.update(node.input)
  del m.graph.node[:]
  m.graph.node.extend(reversed(live))
  m.graph.initializer.extend(initializers)
  used = {n for node in m.graph.node for n in node.input} | {o.name for o in m.graph.output}
  keep = [t for t in m.graph.initializer if t.name in used]
  del m.graph.initializer[:]
  m.graph.initializer.extend(keep)
  return infer_shapes(m)


# ----------------------------------------------------------------------------------------------
# Whole-graph passes


def ort_optimize(model: onnx.ModelProto) -> onnx.ModelProto:
  """onnxruntime's basic (provider-independent) optimisations, written back as standard ONNX."""
  import onnxruntime as ort
  so = ort.SessionOptions()
  so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
  with tempfile.TemporaryDirectory() as d:
    so.optimized_model_filepath = os.path.join(d, 'optimized.onnx')
    ort.InferenceSession(model.SerializeToString(), so, providers=['CPUExecutionProvider'])
    out = onnx.load(so.optimized_model_filepath)
  custom = sorted({n.op_type for n in out.graph.node if n.domain not in ('', 'ai.onnx')})
  if custom:
    raise GraphRewriteError(f'onnxruntime introduced non-standard ops {custom}; this needs a '
                            'newer ghostnets_jax or an older onnxruntime.')
  used = {n.domain for n in out.graph.node} | {''}
  keep = [o for o in out.opset_import if o.domain in used]
  del out.opset_import[:]
  out.opset_import.extend(keep)
  out.producer_name, out.producer_version = model.producer_name, model.producer_version
  del out.metadata_props[:]
  out.metadata_props.extend(model.metadata_props)
  return infer_shapes(out)


def fix_batch_size(model: onnx.ModelProto, batch_size: int) -> onnx.ModelProto:
  """Sets the symbolic batch dimension of every graph input and output to ``batch_size``."""
  if batch_size < 1:
    raise GraphRewriteError(f'batch size must be positive, got {batch_size}')
  m = onnx.ModelProto()
  m.CopyFrom(model)
  for is_input, values in ((True, m.graph.input), (False, m.graph.output)):
    for v in values:
      dims = v.type.tensor_type.shape.dim
      if not dims:
        continue
      if dims[0].HasField('dim_value'):
        if is_input and dims[0].dim_value != batch_size:
          raise GraphRewriteError(f'input {v.name!r} already has the fixed batch size {dims[0].dim_value}')
        continue
      dims[0].Clear()
      dims[0].dim_value = batch_size
  return infer_shapes(m)


def static_graph(model: onnx.ModelProto, batch_size: int) -> onnx.ModelProto:
  """Fixed batch size, all shape arithmetic folded into constants, shapes inferred."""
  return ort_optimize(fix_batch_size(model, batch_size))


# ----------------------------------------------------------------------------------------------
# Op rewrites


def decompose_hardswish(model: onnx.ModelProto) -> onnx.ModelProto:
  """``HardSwish(x)`` -> ``Mul(x, HardSigmoid(x, alpha=1/6, beta=0.5))``."""
  names = _Names(model)
  nodes = []
  for node in model.graph.node:
    if node.op_type != 'HardSwish':
      nodes.append(node)
      continue
    x, y = node.input[0], node.output[0]
    gate = names(f'{y}_hsig')
    nodes += [helper.make_node('HardSigmoid', [x], [gate], name=names(f'{node.name}_hsig'),
                               alpha=1.0 / 6.0, beta=0.5),
              helper.make_node('Mul', [x, gate], [y], name=names(f'{node.name}_mul'))]
  return _rebuild(model, nodes)


def avgpool_count_correction(size: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                             pads: Sequence[int]) -> np.ndarray:
  """``k*k / count`` per output position of a padded pool that does not count padding.

  ``pads`` in ONNX order ``(top, left, bottom, right)``; returns ``(1, 1, Ho, Wo)`` float32.
  """
  ratio = []
  for axis in range(2):
    n, k, s = size[axis], kernel[axis], strides[axis]
    lo, hi = pads[axis], pads[axis + 2]
    out = (n + lo + hi - k) // s + 1
    start = np.arange(out) * s - lo
    count = np.minimum(start + k, n) - np.maximum(start, 0)
    ratio.append(k / count)
  return np.asarray(np.outer(ratio[0], ratio[1])[None, None], np.float32)


def split_padded_avgpool(model: onnx.ModelProto) -> onnx.ModelProto:
  """A padded 2-D ``AveragePool`` -> zero ``Pad`` + VALID ``AveragePool`` (+ count correction)."""
  names, shp = _Names(model), shapes(model)
  nodes, inits = [], []
  for node in model.graph.node:
    a = attributes(node)
    pads = list(a.get('pads', []))
    if (node.op_type != 'AveragePool' or not any(pads) or len(pads) != 4
        or a.get('ceil_mode', 0) or a.get('auto_pad', b'NOTSET') not in (b'NOTSET', 'NOTSET')):
      nodes.append(node)
      continue
    x, y = node.input[0], node.output[0]
    t, l, b, r = pads
    pad_init = numpy_helper.from_array(np.array([0, 0, t, l, 0, 0, b, r], np.int64),
                                       names(f'{node.name}_pads'))
    inits.append(pad_init)
    padded, pooled = names(f'{x}_padded'), names(f'{y}_valid')
    kernel, strides = a['kernel_shape'], a.get('strides', [1, 1])
    nodes.append(helper.make_node('Pad', [x, pad_init.name], [padded], name=names(f'{node.name}_pad'),
                                  mode='constant'))
    pool_attrs = dict(kernel_shape=kernel, strides=strides, pads=[0, 0, 0, 0], count_include_pad=1)
    if a.get('count_include_pad', 0):
      nodes.append(helper.make_node('AveragePool', [padded], [y], name=node.name, **pool_attrs))
      continue
    size = shp.get(x)
    if size is None or len(size) != 4 or None in size[2:]:
      raise GraphRewriteError(f'{node.name}: the spatial size of {x!r} must be known to rewrite an '
                              'AveragePool that excludes padding; fix the input size first.')
    corr = numpy_helper.from_array(avgpool_count_correction(size[2:], kernel, strides, pads),
                                   names(f'{node.name}_count'))
    inits.append(corr)
    nodes += [helper.make_node('AveragePool', [padded], [pooled], name=node.name, **pool_attrs),
              helper.make_node('Mul', [pooled, corr.name], [y], name=names(f'{node.name}_corr'))]
  return _rebuild(model, nodes, inits)


def onnx_opset(model: onnx.ModelProto) -> Optional[int]:
  """The model's opset of the default (``ai.onnx``) domain, None when it imports none."""
  return next((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), None)


def nearest_source_indices(size_in: int, size_out: int) -> np.ndarray:
  """Source row of each output row of a nearest upsampling, PyTorch's ``floor(i * in / out)``."""
  return np.arange(size_out, dtype=np.int64) * size_in // size_out


def resize_picks_exactly(size_in: int, size_out: int) -> bool:
  """True when ONNX ``Resize`` (nearest, ``asymmetric``, ``floor``) from ``sizes`` picks the rows of
  :func:`nearest_source_indices` whichever way a runtime computes the source coordinate:
  ``i / (out / in)`` or ``i * (in / out)``, in float32 or float64."""
  i, want = np.arange(size_out), nearest_source_indices(size_in, size_out)
  for dt in (np.float32, np.float64):
    n_in, n_out, pos = dt(size_in), dt(size_out), i.astype(dt)
    for src in (pos / (n_out / n_in), pos * (n_in / n_out)):
      if not np.array_equal(np.floor(src).astype(np.int64), want):
        return False
  return True


def nearest_gathers_to_resize(model: onnx.ModelProto) -> onnx.ModelProto:
  """``Gather`` along H and/or W of a 4-D tensor with nearest-upsampling indices -> one ``Resize``.

  A ``Gather`` qualifies when its constant 1-D indices are :func:`nearest_source_indices` of the
  axis (and :func:`resize_picks_exactly` holds); an H gather whose only consumer is a qualifying W
  gather (or the reverse) becomes a single ``Resize(mode='nearest',
  coordinate_transformation_mode='asymmetric', nearest_mode='floor')`` with constant ``sizes`` on
  ``axes`` [2, 3] (opset 18), so the batch stays dynamic without shape arithmetic. Other gathers,
  and every gather of a model below opset 18, are left as they are.
  """
  if (onnx_opset(model) or 0) < 18:
    return model
  const, shp, names = constants(model), shapes(model), _Names(model)
  upsample: dict[str, tuple[int, int]] = {}  # gather output -> (axis, output size)
  for node in model.graph.node:
    x = node.input[0] if node.op_type == 'Gather' else None
    idx = const.get(node.input[1]) if x is not None else None
    if idx is None or idx.ndim != 1 or len(shp.get(x, ())) != 4:
      continue
    axis = attributes(node).get('axis', 0) % 4
    n = shp[x][axis] if axis in (2, 3) else None
    if (n is not None and np.array_equal(idx, nearest_source_indices(n, len(idx)))
        and resize_picks_exactly(n, len(idx))):
      upsample[node.output[0]] = (axis, len(idx))
  if not upsample:
    return model
  consumers: dict[str, list] = {}
  for n in model.graph.node:
    for i in n.input:
      consumers.setdefault(i, []).append(n)
  outputs = {o.name for o in model.graph.output}
  inner = set()  # first gathers of a pair, merged into the second
  for node in model.graph.node:
    out = node.output[0] if node.op_type == 'Gather' else None
    users = consumers.get(out, [])
    if (out in upsample and out not in outputs and len(users) == 1 and users[0].input[0] == out
        and users[0].output[0] in upsample and upsample[users[0].output[0]][0] != upsample[out][0]):
      inner.add(out)
  producer = {o: n for n in model.graph.node for o in n.output}
  nodes, inits = [], []
  for node in model.graph.node:
    out = node.output[0] if node.op_type == 'Gather' else None
    if out in inner:
      continue
    if out not in upsample:
      nodes.append(node)
      continue
    steps = [upsample[out]]
    x = node.input[0]
    if x in inner:
      steps.append(upsample[x])
      x = producer[x].input[0]
    axes, sizes = zip(*sorted(steps))
    init = numpy_helper.from_array(np.array(sizes, np.int64), names(f'{node.name}_sizes'))
    inits.append(init)
    nodes.append(helper.make_node('Resize', [x, '', '', init.name], [out], name=names(f'{node.name}_resize'),
                                  axes=list(axes), mode='nearest',
                                  coordinate_transformation_mode='asymmetric', nearest_mode='floor'))
  return _rebuild(model, nodes, inits)


def _channel_indices(node: onnx.NodeProto, const: dict, shp: dict) -> Optional[list[list[int]]]:
  """Channel indices each output of a Slice/Split/Gather takes from a 4-D NCHW input, else None."""
  x = node.input[0]
  if len(shp.get(x, ())) != 4 or shp[x][1] is None:
    return None
  c = shp[x][1]
  a = attributes(node)
  if node.op_type == 'Slice':
    if any(i and i not in const for i in node.input[1:]):
      return None
    starts, ends = const[node.input[1]], const[node.input[2]]
    axes = const[node.input[3]] if len(node.input) > 3 and node.input[3] else np.arange(len(starts))
    steps = const[node.input[4]] if len(node.input) > 4 and node.input[4] else np.ones_like(starts)
    axes = [int(ax) % 4 for ax in axes]
    if axes != [1]:
      return None
    return [list(range(c))[slice(int(starts[0]), int(ends[0]), int(steps[0]))]]
  if node.op_type == 'Split':
    if a.get('axis', 0) % 4 != 1:
      return None
    if len(node.input) > 1 and node.input[1]:
      if node.input[1] not in const:
        return None
      sizes = [int(s) for s in const[node.input[1]]]
    elif 'split' in a:
      sizes = list(a['split'])
    else:
      n = len(node.output)
      sizes = [-(-c // n)] * (n - 1)
      sizes.append(c - sum(sizes))
    bounds = np.cumsum([0] + sizes)
    return [list(range(int(lo), int(hi))) for lo, hi in zip(bounds[:-1], bounds[1:])]
  if node.op_type == 'Gather':
    idx = const.get(node.input[1])
    if a.get('axis', 0) % 4 != 1 or idx is None or idx.ndim != 1:
      return None
    return [[int(i) % c for i in idx]]
  return None


def _hoist_above_transposes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
  """``Slice/Split/Gather(Transpose(x))`` -> ``Transpose(Slice/Split/Gather(x))`` (axes permuted)."""
  names, const = _Names(model), constants(model)
  producer = {o: n for n in model.graph.node for o in n.output}
  nodes, inits, changed = [], [], False
  for node in model.graph.node:
    t = producer.get(node.input[0]) if node.op_type in ('Slice', 'Split', 'Gather') else None
    if t is None or t.op_type != 'Transpose' or 'perm' not in attributes(t):
      nodes.append(node)
      continue
    perm = list(attributes(t)['perm'])
    new = onnx.NodeProto()
    new.CopyFrom(node)
    new.input[0] = t.input[0]
    if node.op_type == 'Slice':
      n_axes = len(const.get(node.input[1], []))
      if node.input[1] not in const or (len(node.input) > 3 and node.input[3] and node.input[3] not in const):
        nodes.append(node)
        continue
      axes = const[node.input[3]] if len(node.input) > 3 and node.input[3] else np.arange(n_axes)
      init = numpy_helper.from_array(np.array([perm[int(a) % len(perm)] for a in axes], np.int64),
                                     names(f'{node.name}_axes'))
      inits.append(init)
      while len(new.input) < 4:
        new.input.append('')
      new.input[3] = init.name
    else:
      for a in new.attribute:
        if a.name == 'axis':
          a.i = perm[a.i % len(perm)]
      if not any(a.name == 'axis' for a in new.attribute):
        new.attribute.append(helper.make_attribute('axis', perm[0]))
      if node.op_type == 'Gather' and np.ndim(const.get(node.input[1], 0)) != 1:
        nodes.append(node)  # a scalar index drops the axis: the transpose would change
        continue
    del new.output[:]
    for out in node.output:
      inner = names(f'{out}_untransposed')
      new.output.append(inner)
    nodes.append(new)
    for inner, out in zip(new.output, node.output):
      nodes.append(helper.make_node('Transpose', [inner], [out], name=names(f'{node.name}_transpose'), perm=perm))
    changed = True
  return (_rebuild(model, nodes, inits), True) if changed else (model, False)


def _fold_selections(model: onnx.ModelProto, selections: set[str]) -> onnx.ModelProto:
  """Folds a selection ``Conv`` into the plain (group 1) ``Conv`` that alone consumes it."""
  while True:
    const = constants(model)
    consumers: dict[str, list] = {}
    for n in model.graph.node:
      for i in n.input:
        consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in model.graph.output}
    for sel in model.graph.node:
      if sel.name not in selections or sel.output[0] in outputs:
        continue
      users = consumers.get(sel.output[0], [])
      conv = users[0] if len(users) == 1 else None
      if (conv is None or conv.op_type != 'Conv' or conv.input[0] != sel.output[0]
          or attributes(conv).get('group', 1) != 1 or conv.input[1] not in const):
        continue
      s = const[sel.input[1]][:, :, 0, 0]                  # (selected, C): 0/1
      w = np.einsum('ojhw,jc->ochw', const[conv.input[1]], s).astype(np.float32)
      names = _Names(model)
      w_init = numpy_helper.from_array(w, names(f'{conv.name}_folded'))
      new = onnx.NodeProto()
      new.CopyFrom(conv)
      new.input[0], new.input[1] = sel.input[0], w_init.name
      nodes = [new if n is conv else n for n in model.graph.node if n is not sel]
      if conv.name in selections:
        selections.add(new.name)
      model = _rebuild(model, nodes, [w_init])
      break
    else:
      return model


def channel_slices_to_conv(model: onnx.ModelProto, fold: bool = True) -> onnx.ModelProto:
  """Channel ``Slice``/``Split``/``Gather`` of NCHW tensors -> 1x1 ``Conv`` with 0/1 kernels.

  Slices taken after a layout ``Transpose`` are first moved before it (and the transposes
  cancelled by :func:`ort_optimize`). With ``fold``, a selection whose only consumer is a plain
  convolution is folded into that convolution's kernel (zero weights for the dropped channels),
  so no extra node remains. Slices of other axes, and inputs whose channel count is unknown,
  are left as they are.
  """
  model, hoisted = _hoist_above_transposes(model)
  if hoisted:
    model = ort_optimize(model)
  names, shp, const = _Names(model), shapes(model), constants(model)
  nodes, inits, selections = [], [], set()
  for node in model.graph.node:
    picks = _channel_indices(node, const, shp) if node.op_type in ('Slice', 'Split', 'Gather') else None
    if picks is None:
      nodes.append(node)
      continue
    c = shp[node.input[0]][1]
    for out, idx in zip(node.output, picks):
      kernel = np.zeros((len(idx), c, 1, 1), np.float32)
      kernel[np.arange(len(idx)), idx] = 1.0
      w = numpy_helper.from_array(kernel, names(f'{node.name}_select'))
      inits.append(w)
      name = names(f'{node.name}_conv')
      selections.add(name)
      nodes.append(helper.make_node('Conv', [node.input[0], w.name], [out], name=name, kernel_shape=[1, 1]))
  model = _rebuild(model, nodes, inits)
  return _fold_selections(model, selections) if fold else model


def op_types(model: onnx.ModelProto) -> dict[str, int]:
  """How many nodes of each op type the graph has."""
  counts: dict[str, int] = {}
  for node in model.graph.node:
    counts[node.op_type] = counts.get(node.op_type, 0) + 1
  return dict(sorted(counts.items()))
