"""A MindSpore network built from an exported ONNX graph, and its MINDIR export (for Ascend).

MindSpore cannot import ONNX, and the ONNX -> MindIR converter (``converter_lite``) is not
available everywhere, so :func:`onnx_to_mindspore` translates the graph itself: the ONNX model
is made static (fixed batch, shape arithmetic folded, see
:func:`~ghostnets_jax.export.rewrites.static_graph`), every node becomes one or two MindSpore
ops in the generated ``construct`` of an ``nn.Cell`` (straight-line code, so MindSpore's graph
compiler sees a plain network), and float initializers become ``Parameter``s (saved as the
``.ckpt``). It is generic over the registry: any model whose ONNX graph uses the ops in
:data:`SUPPORTED_OPS` converts; an unsupported op raises ``NotImplementedError`` naming it.

:func:`export_mindir` writes ``mindspore.export(..., file_format='MINDIR')`` and loads it back
(``mindspore.load`` + ``nn.GraphCell``) to check it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import tempfile
from typing import Any, Callable, Optional, Sequence

import numpy as np
import onnx

from ghostnets_jax.export import rewrites


def _mindspore():
  try:
    import mindspore
  except ImportError as e:
    raise ImportError('the MindSpore route needs MindSpore: pip install "ghostnets_jax[ascend]" '
                      '(or pip install mindspore==2.10.0)') from e
  return mindspore


def _py(v: Any) -> str:
  """Python literal for an attribute value (ints, floats, tuples)."""
  if isinstance(v, np.ndarray):
    v = v.tolist()
  if isinstance(v, (list, tuple)):
    items = [_py(i) for i in v]
    return '(' + ', '.join(items) + (',)' if len(items) == 1 else ')')
  if isinstance(v, (float, np.floating)):
    return repr(float(v)) if np.isfinite(v) else f"float('{float(v)}')"
  if isinstance(v, (bool, np.bool_)):
    return repr(bool(v))
  return repr(int(v))


class _Codegen:
  """Turns a static ONNX graph into the source of ``construct`` plus its parameters."""

  def __init__(self, model: onnx.ModelProto):
    self.model = model
    self.const = rewrites.constants(model)
    self.shape = rewrites.shapes(model)
    self.lines: list[str] = []
    self.params: dict[str, np.ndarray] = {}   # trainable weights (saved in the .ckpt)
    self.tensors: dict[str, np.ndarray] = {}  # constant index tensors
    self.local: dict[str, str] = {}
    self.attr_names: set[str] = set()

  # values ------------------------------------------------------------------------------------
  def _attr(self, onnx_name: str, prefix: str) -> str:
    base = prefix + (re.sub(r'\W', '_', onnx_name).strip('_') or 'v')
    name, i = base, 0
    while name in self.attr_names:
      i += 1
      name = f'{base}_{i}'
    self.attr_names.add(name)
    return name

  def ref(self, name: str) -> str:
    """Expression for a tensor input of a node."""
    if name in self.local:
      return self.local[name]
    if name not in self.const:
      raise ValueError(f'value {name!r} is used before it is computed')
    v = self.const[name]
    if v.ndim == 0 and np.issubdtype(v.dtype, np.floating):
      return _py(v)
    attr = self._attr(name, 'w_' if np.issubdtype(v.dtype, np.floating) else 'c_')
    (self.params if np.issubdtype(v.dtype, np.floating) else self.tensors)[attr] = v
    self.local[name] = f'self.{attr}'
    return self.local[name]

  def ints(self, name: str) -> list[int]:
    if name not in self.const:
      raise NotImplementedError(f'{name!r} must be a constant (shape arithmetic should be folded)')
    return [int(i) for i in np.asarray(self.const[name]).reshape(-1)]

  def out(self, name: str, expr: str) -> None:
    var = f't{len(self.local)}'
    self.lines.append(f'    {var} = {expr}')
    self.local[name] = var

  def out_shape(self, node: onnx.NodeProto, i: int = 0) -> tuple[int, ...]:
    s = self.shape.get(node.output[i])
    if s is None or None in s:
      raise NotImplementedError(f'{node.op_type} {node.name!r}: output shape unknown; the graph must be static')
    return s

  def in_shape(self, node: onnx.NodeProto, i: int = 0) -> tuple[int, ...]:
    s = self.shape.get(node.input[i])
    if s is None or None in s:
      raise NotImplementedError(f'{node.op_type} {node.name!r}: input shape unknown; the graph must be static')
    return s

  # graph -------------------------------------------------------------------------------------
  def generate(self) -> str:
    g = self.model.graph
    inputs = [i for i in g.input if i.name not in self.const]
    for k, i in enumerate(inputs):
      self.local[i.name] = f'x{k}'
    for node in g.node:
      if node.op_type == 'Constant':
        continue
      emit = SUPPORTED_OPS.get(node.op_type)
      if emit is None:
        raise NotImplementedError(
            f'ONNX op {node.op_type!r} (node {node.name!r}) has no MindSpore mapping yet; add one to '
            'ghostnets_jax.export.mindspore.SUPPORTED_OPS.')
      emit(self, node, rewrites.attributes(node))
    outs = ', '.join(self.ref(o.name) for o in g.output)
    args = ', '.join(f'x{k}' for k in range(len(inputs)))
    return '\n'.join([
        'import mindspore',
        'from mindspore import nn, ops',
        '',
        '',
        'class OnnxNet(nn.Cell):',
        '  """Generated by ghostnets_jax.export.mindspore from an ONNX graph."""',
        '',
        '  def __init__(self, params, tensors):',
        '    super().__init__()',
        '    for k, v in params.items():',
        '      setattr(self, k, mindspore.Parameter(mindspore.Tensor(v), name=k))',
        '    for k, v in tensors.items():',
        '      setattr(self, k, mindspore.Tensor(v))',
        '',
        '  @mindspore.jit',
        f'  def construct(self, {args}):',
        *self.lines,
        f'    return {outs}',
        ''])


# ---------------------------------------------------------------------------------------------
# Op emitters: (codegen, node, attributes) -> None; each defines the node's outputs.


def _elementwise(op: str) -> Callable:
  def emit(cg: _Codegen, node, a):
    cg.out(node.output[0], f'{cg.ref(node.input[0])} {op} {cg.ref(node.input[1])}')
  return emit


def _unary(fn: str) -> Callable:
  def emit(cg: _Codegen, node, a):
    cg.out(node.output[0], f'ops.{fn}({cg.ref(node.input[0])})')
  return emit


def _pad_expr(x: str, pads: Sequence[int], value: Optional[str] = None) -> str:
  """``ops.pad`` of an NCHW tensor by ONNX-ordered 2-D pads ``(top, left, bottom, right)``."""
  t, l, b, r = pads
  v = f', value={value}' if value is not None else ''
  return f"ops.pad({x}, {_py((l, r, t, b))}, 'constant'{v})"


def _explicit_pads(cg: _Codegen, node, a, kernel: Sequence[int]) -> list[int]:
  """ONNX ``(top, left, bottom, right)`` pads, with ``auto_pad`` resolved on the static input shape."""
  auto = a.get('auto_pad', b'NOTSET')
  auto = auto.decode() if isinstance(auto, bytes) else auto
  if auto == 'NOTSET':
    return list(a.get('pads', [0, 0, 0, 0]))
  if auto == 'VALID':
    return [0, 0, 0, 0]
  size = cg.in_shape(node)[2:]
  strides, dil = a.get('strides', [1, 1]), a.get('dilations', [1, 1])
  lo, hi = [], []
  for n, k, s_, d in zip(size, kernel, strides, dil):
    total = max((-(-n // s_) - 1) * s_ + (k - 1) * d + 1 - n, 0)
    small = total // 2
    lo.append(small if auto == 'SAME_UPPER' else total - small)
    hi.append(total - lo[-1])
  return lo + hi


def _conv(cg: _Codegen, node, a):
  if len(cg.in_shape(node)) != 4:
    raise NotImplementedError(f'Conv {node.name!r}: only 2-D convolutions are supported')
  x = cg.ref(node.input[0])
  pads = _explicit_pads(cg, node, a, cg.shape[node.input[1]][2:])
  w = cg.ref(node.input[1])
  b = cg.ref(node.input[2]) if len(node.input) > 2 and node.input[2] else 'None'
  strides, dil = _py(a.get('strides', [1, 1])), _py(a.get('dilations', [1, 1]))
  if pads[:2] == pads[2:]:
    pad = f"'pad', {_py(pads[:2])}" if any(pads) else "'valid', 0"
  else:
    x, pad = _pad_expr(x, pads), "'valid', 0"
  cg.out(node.output[0], f'ops.conv2d({x}, {w}, {b}, {strides}, {pad}, {dil}, {a.get("group", 1)})')


def _gemm(cg: _Codegen, node, a):
  x, w = cg.ref(node.input[0]), cg.ref(node.input[1])
  if a.get('transA', 0):
    x = f'ops.transpose({x}, (1, 0))'
  expr = f'ops.matmul({x}, ops.transpose({w}, (1, 0)))' if a.get('transB', 0) else f'ops.matmul({x}, {w})'
  if a.get('alpha', 1.0) != 1.0:
    expr = f'{expr} * {_py(a["alpha"])}'
  if len(node.input) > 2 and node.input[2]:
    c = cg.ref(node.input[2])
    expr = f'{expr} + {c}' if a.get('beta', 1.0) == 1.0 else f'{expr} + {c} * {_py(a["beta"])}'
  cg.out(node.output[0], expr)


def _clip(cg: _Codegen, node, a):
  lo = cg.ref(node.input[1]) if len(node.input) > 1 and node.input[1] else _py(a['min']) if 'min' in a else 'None'
  hi = cg.ref(node.input[2]) if len(node.input) > 2 and node.input[2] else _py(a['max']) if 'max' in a else 'None'
  cg.out(node.output[0], f'ops.clamp({cg.ref(node.input[0])}, {lo}, {hi})')


def _hard_sigmoid(cg: _Codegen, node, a):
  x = cg.ref(node.input[0])
  cg.out(node.output[0], f'ops.clamp({x} * {_py(a.get("alpha", 0.2))} + {_py(a.get("beta", 0.5))}, 0.0, 1.0)')


def _hard_swish(cg: _Codegen, node, a):
  x = cg.ref(node.input[0])
  cg.out(node.output[0], f'{x} * ops.clamp({x} * {_py(1 / 6)} + 0.5, 0.0, 1.0)')


def _concat(cg: _Codegen, node, a):
  parts = ', '.join(cg.ref(i) for i in node.input)
  cg.out(node.output[0], f'ops.concat(({parts},), {a["axis"]})')


def _slices(rank: int, axis_slices: dict[int, slice]) -> str:
  items = []
  for ax in range(rank):
    s = axis_slices.get(ax, slice(None))
    if s == slice(None):
      items.append(':')
    else:
      items.append(f'{"" if s.start is None else s.start}:{"" if s.stop is None else s.stop}'
                   + ('' if s.step in (None, 1) else f':{s.step}'))
  while items and items[-1] == ':':
    items.pop()
  return '[' + ', '.join(items or [':']) + ']'


def _slice(cg: _Codegen, node, a):
  shape = cg.in_shape(node)
  starts, ends = cg.ints(node.input[1]), cg.ints(node.input[2])
  axes = cg.ints(node.input[3]) if len(node.input) > 3 and node.input[3] else list(range(len(starts)))
  steps = cg.ints(node.input[4]) if len(node.input) > 4 and node.input[4] else [1] * len(starts)
  sl = {}
  for s, e, ax, st in zip(starts, ends, axes, steps):
    ax %= len(shape)
    start, stop, step = slice(s, e, st).indices(shape[ax])
    if step < 0:
      raise NotImplementedError(f'Slice {node.name!r}: negative steps are not supported')
    sl[ax] = slice(start, stop, step)
  cg.out(node.output[0], f'{cg.ref(node.input[0])}{_slices(len(shape), sl)}')


def _split(cg: _Codegen, node, a):
  shape = cg.in_shape(node)
  ax = a.get('axis', 0) % len(shape)
  sizes = [cg.out_shape(node, i)[ax] for i in range(len(node.output))]
  x, start = cg.ref(node.input[0]), 0
  for o, size in zip(node.output, sizes):
    cg.out(o, f'{x}{_slices(len(shape), {ax: slice(start, start + size)})}')
    start += size


def _reduce(fn: str) -> Callable:
  def emit(cg: _Codegen, node, a):
    rank = len(cg.in_shape(node))
    if len(node.input) > 1 and node.input[1]:
      axes = cg.ints(node.input[1])
    else:
      axes = list(a.get('axes', range(rank)))
    axes = tuple(ax % rank for ax in axes)
    keep = bool(a.get('keepdims', 1))
    cg.out(node.output[0], f'ops.{fn}({cg.ref(node.input[0])}, {_py(axes)}, {keep})')
  return emit


def _global_avg_pool(cg: _Codegen, node, a):
  cg.out(node.output[0], f'ops.mean({cg.ref(node.input[0])}, (2, 3), True)')


def _pool_common(cg: _Codegen, node, a) -> tuple[str, list[int], list[int], list[int]]:
  if a.get('ceil_mode', 0):
    raise NotImplementedError(f'{node.op_type} {node.name!r}: ceil_mode is not supported')
  if any(d != 1 for d in a.get('dilations', [1, 1])):
    raise NotImplementedError(f'{node.op_type} {node.name!r}: dilated pooling is not supported')
  if len(cg.in_shape(node)) != 4:
    raise NotImplementedError(f'{node.op_type} {node.name!r}: only 2-D pooling is supported')
  kernel = list(a['kernel_shape'])
  return (cg.ref(node.input[0]), kernel, list(a.get('strides', [1, 1])),
          _explicit_pads(cg, node, a, kernel))


def _avg_pool(cg: _Codegen, node, a):
  x, k, s, pads = _pool_common(cg, node, a)
  if any(pads):
    x = _pad_expr(x, pads)
  expr = f'ops.avg_pool2d({x}, {_py(k)}, {_py(s)})'
  if any(pads) and not a.get('count_include_pad', 0):
    corr = rewrites.avgpool_count_correction(cg.in_shape(node)[2:], k, s, pads)
    name = cg._attr(node.output[0] + '_count', 'c_')
    cg.tensors[name] = corr
    expr = f'{expr} * self.{name}'
  cg.out(node.output[0], expr)


def _max_pool(cg: _Codegen, node, a):
  if len(node.output) > 1 and node.output[1]:
    raise NotImplementedError(f'MaxPool {node.name!r}: the indices output is not supported')
  x, k, s, pads = _pool_common(cg, node, a)
  if any(pads):
    x = _pad_expr(x, pads, "float('-inf')")
  cg.out(node.output[0], f'ops.max_pool2d({x}, {_py(k)}, {_py(s)})')


def _pad(cg: _Codegen, node, a):
  mode = a.get('mode', b'constant')
  mode = mode.decode() if isinstance(mode, bytes) else mode
  pads = cg.ints(node.input[1])
  rank = len(pads) // 2
  if len(node.input) > 3 and node.input[3]:
    axes = [ax % rank for ax in cg.ints(node.input[3])]
    full = [0] * (2 * len(cg.in_shape(node)))
    rank = len(cg.in_shape(node))
    for i, ax in enumerate(axes):
      full[ax], full[ax + rank] = pads[i], pads[i + len(axes)]
    pads = full
  ms_pads = []
  for ax in reversed(range(rank)):  # MindSpore/PyTorch order: last axis first
    ms_pads += [pads[ax], pads[ax + rank]]
  while ms_pads[-2:] == [0, 0] and len(ms_pads) > 2:
    ms_pads = ms_pads[:-2]
  value = ''
  if mode == 'constant' and len(node.input) > 2 and node.input[2]:
    value = f', value={_py(float(np.asarray(cg.const[node.input[2]])))}'
  ms_mode = {'constant': 'constant', 'reflect': 'reflect', 'edge': 'replicate'}.get(mode)
  if ms_mode is None:
    raise NotImplementedError(f'Pad {node.name!r}: mode {mode!r} is not supported')
  cg.out(node.output[0], f"ops.pad({cg.ref(node.input[0])}, {_py(ms_pads)}, '{ms_mode}'{value})")


def _reshape_like_output(cg: _Codegen, node, a):
  cg.out(node.output[0], f'ops.reshape({cg.ref(node.input[0])}, {_py(cg.out_shape(node))})')


def _transpose(cg: _Codegen, node, a):
  perm = a.get('perm', list(reversed(range(len(cg.in_shape(node))))))
  cg.out(node.output[0], f'ops.transpose({cg.ref(node.input[0])}, {_py(perm)})')


def _expand(cg: _Codegen, node, a):
  cg.out(node.output[0], f'ops.broadcast_to({cg.ref(node.input[0])}, {_py(cg.out_shape(node))})')


def _gather(cg: _Codegen, node, a):
  shape = cg.in_shape(node)
  ax = a.get('axis', 0) % len(shape)
  if node.input[1] not in cg.const:
    cg.out(node.output[0], f'ops.gather({cg.ref(node.input[0])}, {cg.ref(node.input[1])}, {ax})')
    return
  idx = np.asarray(cg.const[node.input[1]]) % shape[ax]
  if idx.ndim == 0:
    items = [':'] * ax + [str(int(idx))]
    cg.out(node.output[0], f'{cg.ref(node.input[0])}[{", ".join(items)}]')
    return
  name = cg._attr(node.input[1], 'c_')
  cg.tensors[name] = idx.astype(np.int32)
  cg.out(node.output[0], f'ops.gather({cg.ref(node.input[0])}, self.{name}, {ax})')


def resize_nearest_indices(in_size: int, out_size: int, scale: float, mode: str, nearest_mode: str) -> np.ndarray:
  """Source index of each output position of ONNX ``Resize(mode='nearest')`` along one axis."""
  i = np.arange(out_size, dtype=np.float64)
  if mode == 'half_pixel':
    src = (i + 0.5) / scale - 0.5
  elif mode == 'pytorch_half_pixel':
    src = (i + 0.5) / scale - 0.5 if out_size > 1 else np.zeros_like(i)
  elif mode == 'asymmetric':
    src = i / scale
  elif mode == 'align_corners':
    src = i * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros_like(i)
  elif mode == 'tf_half_pixel_for_nn':
    src = (i + 0.5) / scale
  else:
    raise NotImplementedError(f'Resize: coordinate_transformation_mode {mode!r} is not supported')
  rounding = {'floor': np.floor, 'ceil': np.ceil,
              'round_prefer_floor': lambda v: np.where(v - np.floor(v) == 0.5, np.floor(v), np.round(v)),
              'round_prefer_ceil': lambda v: np.floor(v + 0.5)}
  if nearest_mode not in rounding:
    raise NotImplementedError(f'Resize: nearest_mode {nearest_mode!r} is not supported')
  return np.clip(rounding[nearest_mode](src), 0, in_size - 1).astype(np.int32)


def _resize(cg: _Codegen, node, a):
  def s(key, default):
    v = a.get(key, default)
    return v.decode() if isinstance(v, bytes) else v
  if s('mode', 'nearest') != 'nearest':
    raise NotImplementedError(f'Resize {node.name!r}: only mode="nearest" is supported')
  if a.get('antialias', 0) or (len(node.input) > 1 and node.input[1] and any(
      v != 0 for v in np.asarray(cg.const.get(node.input[1], [])).reshape(-1))):
    raise NotImplementedError(f'Resize {node.name!r}: roi/antialias are not supported')
  shape_in, shape_out = cg.in_shape(node), cg.out_shape(node)
  scales = (np.asarray(cg.const[node.input[2]], np.float64)
            if len(node.input) > 2 and node.input[2] and cg.const[node.input[2]].size else
            np.asarray(shape_out, np.float64) / np.asarray(shape_in, np.float64))
  expr = cg.ref(node.input[0])
  for ax, (n_in, n_out) in enumerate(zip(shape_in, shape_out)):
    if n_in == n_out and scales[ax] == 1:
      continue
    idx = resize_nearest_indices(n_in, n_out, float(scales[ax]),
                                 s('coordinate_transformation_mode', 'half_pixel'),
                                 s('nearest_mode', 'round_prefer_floor'))
    name = cg._attr(f'{node.output[0]}_idx{ax}', 'c_')
    cg.tensors[name] = idx
    expr = f'ops.gather({expr}, self.{name}, {ax})'
  cg.out(node.output[0], expr)


def _identity(cg: _Codegen, node, a):
  cg.local[node.output[0]] = cg.ref(node.input[0])


def _softmax(cg: _Codegen, node, a):
  cg.out(node.output[0], f'ops.softmax({cg.ref(node.input[0])}, {a.get("axis", -1)})')


def _flatten(cg: _Codegen, node, a):
  _reshape_like_output(cg, node, a)


SUPPORTED_OPS: dict[str, Callable[[_Codegen, onnx.NodeProto, dict], None]] = {
    'Add': _elementwise('+'), 'Sub': _elementwise('-'), 'Mul': _elementwise('*'), 'Div': _elementwise('/'),
    'Relu': _unary('relu'), 'Sigmoid': _unary('sigmoid'), 'Tanh': _unary('tanh'), 'Exp': _unary('exp'),
    'Sqrt': _unary('sqrt'), 'Erf': _unary('erf'), 'Neg': _unary('neg'), 'Abs': _unary('abs'),
    'HardSigmoid': _hard_sigmoid, 'HardSwish': _hard_swish, 'Clip': _clip,
    'Conv': _conv, 'Gemm': _gemm,
    'MatMul': lambda cg, n, a: cg.out(n.output[0], f'ops.matmul({cg.ref(n.input[0])}, {cg.ref(n.input[1])})'),
    'Concat': _concat, 'Slice': _slice, 'Split': _split, 'Gather': _gather,
    'GlobalAveragePool': _global_avg_pool, 'ReduceMean': _reduce('mean'), 'ReduceSum': _reduce('sum'),
    'ReduceMax': _reduce('amax'), 'AveragePool': _avg_pool, 'MaxPool': _max_pool, 'Pad': _pad,
    'Reshape': _reshape_like_output, 'Flatten': _flatten, 'Squeeze': _reshape_like_output,
    'Unsqueeze': _reshape_like_output, 'Transpose': _transpose, 'Expand': _expand,
    'Resize': _resize, 'Identity': _identity, 'Dropout': _identity, 'Softmax': _softmax,
}


# ---------------------------------------------------------------------------------------------


def mindspore_source(model: onnx.ModelProto, batch_size: int = 1,
                     optimize: bool = True) -> tuple[str, dict, dict]:
  """``(source, params, tensors)`` of the MindSpore network for ``model`` at ``batch_size``.

  ``optimize=False`` skips onnxruntime's graph optimisation (which folds shape arithmetic);
  the graph must then be static apart from the batch.
  """
  static = (rewrites.static_graph(model, batch_size) if optimize
            else rewrites.fix_batch_size(model, batch_size))
  cg = _Codegen(static)
  return cg.generate(), cg.params, cg.tensors


def source_dir() -> str:
  """Where generated network sources are written (``$GHOSTNETS_JAX_MINDSPORE_SOURCES`` or a temp dir)."""
  return os.environ.get('GHOSTNETS_JAX_MINDSPORE_SOURCES',
                        os.path.join(tempfile.gettempdir(), 'ghostnets_jax_mindspore'))


def _load_class(source: str):
  """Imports generated source from a real file: MindSpore's graph compiler re-reads the source
  of ``construct`` and imports its module by name."""
  digest = hashlib.sha1(source.encode()).hexdigest()[:16]
  name = f'ghostnets_jax_onnxnet_{digest}'
  if name not in sys.modules:
    os.makedirs(source_dir(), exist_ok=True)
    path = os.path.join(source_dir(), f'{name}.py')
    if not os.path.exists(path):
      tmp = f'{path}.{os.getpid()}.tmp'
      with open(tmp, 'w') as f:
        f.write(source)
      os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
  return sys.modules[name].OnnxNet


def onnx_to_mindspore(model: onnx.ModelProto, batch_size: int = 1, optimize: bool = True):
  """A MindSpore ``nn.Cell`` computing ``model`` for inputs of batch ``batch_size``.

  The generated Python code is the cell's ``source`` attribute (and a file in :func:`source_dir`);
  ``construct`` is compiled (``mindspore.jit``), also when MindSpore runs in PyNative mode.
  """
  _mindspore()
  source, params, tensors = mindspore_source(model, batch_size, optimize)
  net = _load_class(source)(params, tensors)
  net.set_train(False)
  net.source = source
  return net


def input_shape(model: onnx.ModelProto, batch_size: int) -> tuple[int, ...]:
  dims = model.graph.input[0].type.tensor_type.shape.dim
  return (batch_size, *(d.dim_value for d in dims[1:]))


def run_cell(net, x: np.ndarray) -> np.ndarray:
  """Runs a MindSpore cell on a numpy batch (in the graph's input layout)."""
  ms = _mindspore()
  return net(ms.Tensor(np.ascontiguousarray(x))).asnumpy()


def export_mindir(net, example: np.ndarray, path: str) -> None:
  """``mindspore.export(net, example, file_format='MINDIR')`` to exactly ``path``."""
  ms = _mindspore()
  stem = path[:-len('.mindir')] if path.endswith('.mindir') else path
  ms.export(net, ms.Tensor(np.ascontiguousarray(example)), file_name=stem, file_format='MINDIR')
  if stem + '.mindir' != path:
    os.replace(stem + '.mindir', path)


def load_mindir(path: str):
  """``nn.GraphCell(mindspore.load(path))``: the compiled graph, runnable on this machine."""
  ms = _mindspore()
  return ms.nn.GraphCell(ms.load(path))


def save_checkpoint(net, path: str) -> None:
  """The network's parameters as a MindSpore ``.ckpt``."""
  ms = _mindspore()
  ms.save_checkpoint(net, path)
  if not os.path.exists(path) and os.path.exists(path + '.ckpt'):
    os.replace(path + '.ckpt', path)
