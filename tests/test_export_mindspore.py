"""The MindSpore route: ONNX graph -> MindSpore network (op by op vs onnxruntime), MINDIR export
of registered models vs JAX, loaded back with mindspore.load + nn.GraphCell."""
import os

import mindspore as ms
import numpy as np
import pytest
from onnx import helper

from ghostnets_jax.export import mindspore as gms
from ghostnets_jax.export import pipeline
from ghostnets_jax.export import rewrites as rw
from ghostnets_jax.export.lite import run_onnx
from tests.export_helpers import exported, graph, images, jax_logits, mindspore_cases
from tests.helpers import SMALL, model_and_variables

I64 = np.int64


def n(op, inputs, outputs, **attrs):
  return helper.make_node(op, inputs, outputs, **attrs)


# (name, nodes, x shape, initializers, ops that must reach the interpreter)
OP_CASES = [
    ('conv_grouped_asymmetric', [n('Conv', ['x', 'w', 'b'], ['c'], group=2, pads=[1, 0, 2, 1], strides=[2, 1],
                                  dilations=[1, 2]), n('Relu', ['c'], ['y'])],
     [2, 4, 9, 9], {'w': images(6, 2, 3, 3), 'b': images(6)}, {'Conv', 'Relu'}),
    ('conv_same_upper_depthwise', [n('Conv', ['x', 'w'], ['y'], group=4, auto_pad='SAME_UPPER', strides=[2, 2])],
     [2, 4, 8, 8], {'w': images(8, 1, 3, 3)}, {'Conv'}),
    ('gemm_matmul', [n('Gemm', ['x', 'w', 'c'], ['g'], transB=1, alpha=0.5, beta=2.0),
                     n('MatMul', ['g', 'm'], ['y'])], [3, 5], {'w': images(4, 5), 'c': images(4), 'm': images(4, 2)},
     {'Gemm', 'MatMul'}),
    ('activations', [n('HardSigmoid', ['x'], ['a'], alpha=0.3, beta=0.4), n('HardSwish', ['x'], ['b']),
                     n('Clip', ['x', 'lo', 'hi'], ['c']), n('Sigmoid', ['x'], ['d']), n('Tanh', ['x'], ['e']),
                     n('Concat', ['a', 'b', 'c', 'd', 'e'], ['f'], axis=1), n('Softmax', ['f'], ['y'], axis=1)],
     [2, 3, 4, 4], {'lo': np.float32(-0.5), 'hi': np.float32(0.7)},
     {'HardSigmoid', 'HardSwish', 'Clip', 'Sigmoid', 'Tanh', 'Concat', 'Softmax'}),
    ('slice_split_gather', [n('Slice', ['x', 'st', 'en', 'ax', 'sp'], ['a']), n('Split', ['a', 'sz'], ['b', 'c'], axis=1),
                            n('Gather', ['c', 'idx'], ['d'], axis=3), n('Gather', ['b', 'one'], ['e'], axis=1),
                            n('Unsqueeze', ['e', 'ax'], ['f']), n('Mul', ['d', 'f'], ['y'])],
     [2, 10, 9, 6], {'st': np.array([-9], I64), 'en': np.array([100], I64), 'ax': np.array([1], I64),
                    'sp': np.array([2], I64), 'sz': np.array([2, 3], I64), 'idx': np.array([5, 0, 0, 2, 3, 1], I64),
                    'one': np.array(1, I64)},
     {'Slice', 'Split', 'Gather', 'Unsqueeze', 'Mul'}),
    ('reductions', [n('GlobalAveragePool', ['x'], ['a']), n('ReduceMean', ['x', 'hw'], ['b'], keepdims=1),
                    n('ReduceSum', ['x', 'hw'], ['c'], keepdims=1), n('Add', ['a', 'b'], ['d']),
                    n('Sub', ['d', 'c'], ['e']), n('Div', ['x', 'e'], ['y'])],
     [2, 3, 5, 4], {'hw': np.array([2, 3], I64)}, {'GlobalAveragePool', 'ReduceMean', 'ReduceSum', 'Div'}),
    ('pooling', [n('AveragePool', ['x'], ['a'], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 0]),
                 n('MaxPool', ['x'], ['b'], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 0]),
                 n('AveragePool', ['x'], ['c'], kernel_shape=[2, 2], strides=[2, 2], count_include_pad=1,
                   pads=[0, 0, 1, 0]),
                 n('Add', ['a', 'b'], ['d']), n('Add', ['d', 'c'], ['y'])],
     [2, 3, 9, 8], {}, {'AveragePool', 'MaxPool'}),
    ('pad_reshape_transpose', [n('Pad', ['x', 'p', 'v'], ['a'], mode='constant'), n('Pad', ['a', 'p'], ['b'], mode='reflect'),
                               n('Transpose', ['b'], ['c'], perm=[0, 2, 3, 1]), n('Reshape', ['c', 's'], ['d']),
                               n('Flatten', ['d'], ['e'], axis=1), n('Expand', ['e', 'ex'], ['y'])],
     [2, 3, 4, 5], {'p': np.array([0, 0, 1, 2, 0, 0, 2, 1], I64), 'v': np.float32(1.5),
                    's': np.array([0, -1, 3], I64), 'ex': np.array([3, 1, 1], I64)},
     {'Pad', 'Transpose', 'Reshape', 'Flatten', 'Expand'}),
    ('resize_nearest', [n('Resize', ['x', '', '', 'sizes'], ['a'], mode='nearest',
                          coordinate_transformation_mode='asymmetric', nearest_mode='floor'),
                        n('Resize', ['x', '', 'scales'], ['b'], mode='nearest'),
                        n('Slice', ['b', 'zero', 'end', 'hw'], ['c']), n('Add', ['a', 'c'], ['y'])],
     [2, 3, 4, 6], {'sizes': np.array([2, 3, 7, 9], I64), 'scales': np.array([1, 1, 2, 2], np.float32),
                    'zero': np.array([0, 0], I64), 'end': np.array([7, 9], I64), 'hw': np.array([2, 3], I64)},
     {'Resize'}),
]


@pytest.mark.parametrize('name,nodes,x_shape,inits,ops', OP_CASES, ids=[c[0] for c in OP_CASES])
def test_mindspore_network_matches_onnxruntime_per_op(name, nodes, x_shape, inits, ops):
  x_shape = ['N', *x_shape[1:]]
  model = graph(nodes, x_shape, inits=inits)
  batch = 2
  x = images(batch, *x_shape[1:], seed=3) * 2
  for optimize in (True, False):  # as exported, and as written (onnxruntime rewrites some ops)
    static = rw.static_graph(model, batch) if optimize else rw.fix_batch_size(model, batch)
    if not optimize:
      assert ops <= set(rw.op_types(static)), rw.op_types(static)  # the ops reach the interpreter
    net = gms.onnx_to_mindspore(model, batch, optimize=optimize)
    np.testing.assert_allclose(gms.run_cell(net, x), run_onnx(model, x), rtol=1e-5, atol=1e-5)


def test_unsupported_op_is_named():
  model = graph([n('LRN', ['x'], ['y'], size=3)], ['N', 4, 5, 5])
  with pytest.raises(NotImplementedError, match="'LRN'.*SUPPORTED_OPS"):
    gms.onnx_to_mindspore(model, 1)


def test_resize_nearest_indices_match_pytorch_and_onnx_modes():
  # PyTorch 'nearest' (floor(i * in / out)) is ONNX asymmetric + floor
  for n_in, n_out in ((4, 8), (3, 7), (7, 3), (5, 5)):
    got = gms.resize_nearest_indices(n_in, n_out, n_out / n_in, 'asymmetric', 'floor')
    np.testing.assert_array_equal(got, (np.arange(n_out) * n_in) // n_out)
  np.testing.assert_array_equal(gms.resize_nearest_indices(2, 4, 2.0, 'half_pixel', 'round_prefer_floor'),
                                [0, 0, 1, 1])
  with pytest.raises(NotImplementedError, match='coordinate_transformation_mode'):
    gms.resize_nearest_indices(2, 4, 2.0, 'crop', 'floor')


@pytest.mark.parametrize('name', [pytest.param(m, marks=pytest.mark.xdist_group(f'export_{m}'))
                                  for m in mindspore_cases()])
def test_mindir_export_matches_jax_and_loads_back(name, tmp_path):
  out = str(tmp_path / f'{name}.mindir')
  report = pipeline.export_mindspore_file(
      name, out, input_size=SMALL, batch_size=2, model_and_variables=model_and_variables(name),
      reference=jax_logits(name), onnx_model=exported(name))
  assert os.path.getsize(out) > 1e5 and os.path.exists(out[:-len('.mindir')] + '.ckpt')
  assert sorted(os.listdir(tmp_path)) == [f'{name}.ckpt', f'{name}.mindir']  # no temporary files left
  assert len(report.checks) == 2 and all('max |MindSpore - JAX|' in c for c in report.checks)
  x = images(2, SMALL, SMALL, 3, seed=7)
  want = jax_logits(name)(x)
  # the MINDIR, loaded back and run by MindSpore's graph executor
  loaded = gms.load_mindir(out)
  got = gms.run_cell(loaded, x.transpose(0, 3, 1, 2))
  assert np.abs(got - want).max() < 1e-4 and np.abs(want).max() > 0.1
  # the .ckpt holds every weight of the generated network
  _, params, _ = gms.mindspore_source(exported(name), 2)
  saved = ms.load_checkpoint(out[:-len('.mindir')] + '.ckpt')
  assert set(saved) == set(params)
  for k, v in params.items():
    np.testing.assert_array_equal(saved[k].asnumpy(), v)
