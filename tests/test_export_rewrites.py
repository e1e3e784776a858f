"""ONNX graph rewrites: every pass keeps onnxruntime's output equal, on small graphs and real models."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from onnx import helper

from ghostnets_jax.export import export_onnx
from ghostnets_jax.export import rewrites as rw
from ghostnets_jax.export.lite import prepare_for_converter_lite, run_onnx, verify_rewrite
from ghostnets_jax.layers import ConvBN, GhostModule, check_images
from tests.export_helpers import exported, graph, images
from tests.helpers import FAST_COMPILE, random_variables


def assert_same(a: onnx.ModelProto, b: onnx.ModelProto, x: np.ndarray, atol: float = 1e-6):
  onnx.checker.check_model(b, full_check=True)
  np.testing.assert_allclose(run_onnx(b, x), run_onnx(a, x), atol=atol)


def test_decompose_hardswish():
  m = graph([helper.make_node('HardSwish', ['x'], ['h']), helper.make_node('Relu', ['h'], ['y'])],
            ['N', 4, 5, 5], ['N', 4, 5, 5])
  out = rw.decompose_hardswish(m)
  assert rw.op_types(out) == {'HardSigmoid': 1, 'Mul': 1, 'Relu': 1}
  assert_same(m, out, images(3, 4, 5, 5) * 4)
  assert rw.op_types(m) == {'HardSwish': 1, 'Relu': 1}  # the input model is untouched


@pytest.mark.parametrize('count_include_pad', [0, 1])
@pytest.mark.parametrize('kernel,strides,pads', [((3, 3), (1, 1), (1, 1, 1, 1)), ((3, 3), (2, 2), (1, 0, 1, 1)),
                                                 ((2, 3), (2, 1), (0, 1, 1, 0))])
def test_split_padded_avgpool(count_include_pad, kernel, strides, pads):
  pool = helper.make_node('AveragePool', ['x'], ['y'], kernel_shape=kernel, strides=strides, pads=pads,
                          count_include_pad=count_include_pad)
  x = images(2, 3, 7, 8)
  out_hw = [(n + pads[i] + pads[i + 2] - kernel[i]) // strides[i] + 1 for i, n in enumerate((7, 8))]
  m = graph([pool], [2, 3, 7, 8], [2, 3, *out_hw])
  out = rw.split_padded_avgpool(m)
  ops = rw.op_types(out)
  assert ops.get('Pad') == 1 and ops.get('AveragePool') == 1 and ops.get('Mul', 0) == 1 - count_include_pad
  pool_attrs = rw.attributes(next(n for n in out.graph.node if n.op_type == 'AveragePool'))
  assert not any(pool_attrs['pads'])
  assert_same(m, out, x, atol=1e-5)


def test_fix_batch_size_and_static_graph():
  # Shape -> Gather -> Concat -> Reshape: shape arithmetic on the dynamic batch
  nodes = [helper.make_node('Shape', ['x'], ['s']),
           helper.make_node('Gather', ['s', 'zero'], ['n'], axis=0),
           helper.make_node('Concat', ['n', 'rest'], ['shape'], axis=0),
           helper.make_node('Reshape', ['x', 'shape'], ['y'])]
  m = graph(nodes, ['N', 4, 3, 3], ['N', 36], {'zero': np.array([0], np.int64), 'rest': np.array([36], np.int64)})
  fixed = rw.fix_batch_size(m, 3)
  assert fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3
  assert fixed.graph.output[0].type.tensor_type.shape.dim[0].dim_value == 3
  static = rw.static_graph(m, 3)
  assert rw.op_types(static) == {'Reshape': 1}
  assert_same(m, static, images(3, 4, 3, 3))
  with pytest.raises(rw.GraphRewriteError, match='already has the fixed batch size 3'):
    rw.fix_batch_size(fixed, 2)
  with pytest.raises(rw.GraphRewriteError, match='positive'):
    rw.fix_batch_size(m, 0)


def test_channel_slices_to_conv_on_small_graphs():
  x = images(2, 6, 5, 5)
  inits = {'s': np.array([1], np.int64), 'e': np.array([6], np.int64), 'ax': np.array([1], np.int64),
           'st': np.array([2], np.int64), 'sizes': np.array([2, 4], np.int64),
           'idx': np.array([5, 0, 0, 3], np.int64), 's0': np.array([0, 1], np.int64),
           'e0': np.array([2, 3], np.int64), 'ax23': np.array([2, 3], np.int64)}
  nodes = [helper.make_node('Slice', ['x', 's', 'e', 'ax', 'st'], ['a']),        # channels 1, 3, 5
           helper.make_node('Split', ['x', 'sizes'], ['b', 'c'], axis=1),       # 0-1 | 2-5
           helper.make_node('Gather', ['x', 'idx'], ['d'], axis=1),             # 5, 0, 0, 3
           helper.make_node('Slice', ['x', 's0', 'e0', 'ax23'], ['sp']),        # spatial: kept
           helper.make_node('Concat', ['a', 'b', 'c', 'd'], ['cat'], axis=1),
           helper.make_node('ReduceMean', ['sp'], ['m'], keepdims=1),
           helper.make_node('Add', ['cat', 'm'], ['y'])]
  m = graph(nodes, ['N', 6, 5, 5], ['N', 13, 5, 5], inits)
  out = rw.channel_slices_to_conv(m)
  assert rw.op_types(out) == {'Add': 1, 'Concat': 1, 'Conv': 4, 'ReduceMean': 1, 'Slice': 1}
  for node in out.graph.node:
    if node.op_type == 'Conv':
      w = rw.constants(out)[node.input[1]]
      assert set(np.unique(w)) <= {0.0, 1.0} and np.all(w.sum(axis=1) == 1)
  assert_same(m, out, x, atol=0)  # selection by 0/1 kernels is exact
  assert_same(m, out, images(1, 6, 5, 5), atol=0)  # still dynamic in the batch


class SlicingNet(nn.Module):
  """Library layers whose ONNX graph slices channels: a ghost module with 5 of 6 channels kept
  (``[..., :features]``) and a G-Ghost-style split into a cheap and a complicated part."""
  deploy: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    check_images(x, 3, 'SlicingNet')
    x = ConvBN(8, 3, 2, act='relu', deploy=self.deploy, name='stem')(x, train)
    x = GhostModule(5, deploy=self.deploy, name='ghost')(x, train)
    cheap, rest = x[..., :2], x[..., 2:]
    rest = ConvBN(3, 3, act='relu', deploy=self.deploy, name='body')(rest, train)
    x = jnp.concatenate([rest, cheap], axis=-1)
    return nn.Dense(4, name='classifier')(jnp.mean(x, axis=(1, 2)))


@pytest.fixture(scope='module')
def slicing_net():
  model = SlicingNet()
  variables = random_variables(model, 16)
  return model, variables, export_onnx(model, variables, 16)


def test_channel_slices_to_conv_on_ghost_module_and_split(slicing_net):
  model, variables, proto = slicing_net
  # the ghost module's cut, the split and a slice after a layout transpose survive export
  assert rw.op_types(proto).get('Slice', 0) >= 3
  x = images(3, 16, 16, 3, seed=1)
  xn = x.transpose(0, 3, 1, 2)
  want = np.asarray(jax.jit(lambda v, x: model.apply(v, x),
                            compiler_options=FAST_COMPILE)(variables, x))
  convs = {}
  for fold in (False, True):
    out = rw.channel_slices_to_conv(proto, fold=fold)
    ops = rw.op_types(out)
    assert not {'Slice', 'Split', 'Gather'} & set(ops)
    assert_same(proto, out, xn, atol=1e-6)
    np.testing.assert_allclose(run_onnx(out, xn), want, atol=1e-5)
    convs[fold] = ops['Conv']
  assert convs[True] < convs[False]  # a selection feeding a plain conv is folded into its kernel
  # the export option gives the same graph
  direct = export_onnx(model, variables, 16, slice_as_conv=True)
  assert rw.op_types(direct) == rw.op_types(rw.channel_slices_to_conv(proto))


@pytest.mark.xdist_group('export_ghostnet_100')
def test_converter_lite_preparation_on_ghostnet():
  proto = exported('ghostnet_100')
  prepared = prepare_for_converter_lite(proto, batch_size=2)
  dims = prepared.graph.input[0].type.tensor_type.shape.dim
  assert [d.dim_value for d in dims] == [2, 3, 64, 64]
  ops = rw.op_types(prepared)
  assert not {'HardSwish', 'Slice', 'Split', 'Shape'} & set(ops)
  assert all(not any(rw.attributes(n).get('pads', [0])) for n in prepared.graph.node
             if n.op_type == 'AveragePool')
  assert verify_rewrite(proto, prepared, 2) < 1e-5


def test_nearest_gathers_to_resize_on_small_graphs():
  x = images(2, 4, 3, 5)
  ih, iw, iw2 = rw.nearest_source_indices(3, 7), rw.nearest_source_indices(5, 10), rw.nearest_source_indices(5, 12)
  inits = {'ih': ih, 'iw': iw, 'iw2': iw2, 'perm': np.array([2, 0, 1], np.int64)}
  n = helper.make_node
  nodes = [n('Gather', ['x', 'ih'], ['h'], axis=2), n('Gather', ['h', 'iw'], ['hw'], axis=3),  # 3x5 -> 7x10
           n('Gather', ['x', 'iw2'], ['w'], axis=-1),                                            # 3x5 -> 3x12
           n('Gather', ['x', 'perm'], ['p'], axis=2),                                            # not a resize
           *[n('Flatten', [v], [f'{v}_flat'], axis=1) for v in ('hw', 'w', 'p')],
           n('Concat', ['hw_flat', 'w_flat', 'p_flat'], ['y'], axis=1)]
  m = graph(nodes, ['N', 4, 3, 5], None, inits)
  out = rw.nearest_gathers_to_resize(m)
  assert rw.op_types(out) == {'Concat': 1, 'Flatten': 3, 'Gather': 1, 'Resize': 2}
  sizes = sorted(tuple(rw.constants(out)[r.input[3]]) for r in out.graph.node if r.op_type == 'Resize')
  assert sizes == [(7, 10), (12,)]
  assert_same(m, out, x, atol=0)  # nearest resizing copies values
  assert_same(m, out, images(1, 4, 3, 5), atol=0)  # still dynamic in the batch
  # the gathers (hence the Resize) are PyTorch's nearest interpolation
  import torch
  want = torch.nn.functional.interpolate(torch.from_numpy(x), size=(7, 10), mode='nearest').numpy()
  np.testing.assert_array_equal(run_onnx(out, x)[:, :4 * 7 * 10].reshape(2, 4, 7, 10), want)
  # below opset 18 (no Resize axes) the graph stays as it is
  old = graph(nodes, ['N', 4, 3, 5], None, inits, opset=17)
  assert rw.op_types(rw.nearest_gathers_to_resize(old)) == rw.op_types(old)


@pytest.mark.parametrize('size_in,size_out,picks', [(3, 7, True), (2, 4, True), (7, 14, True), (5, 12, True), (14, 16, False)])
def test_resize_picks_exactly_guards_float_rounding(size_in, size_out, picks):
  """Where the check passes, onnxruntime's Resize picks PyTorch's rows. 14 -> 16 fails it:
  8 * 14 / 16 is exactly 7, but 8 / float32(16 / 14) is just below 7."""
  assert rw.resize_picks_exactly(size_in, size_out) == picks
  if not picks:
    assert 8 * 14 / 16 == 7 and np.float32(8) / (np.float32(16) / np.float32(14)) < 7
    return
  x = images(1, 1, size_in, 1)
  resize = helper.make_node('Resize', ['x', '', '', 'sizes'], ['y'], axes=[2], mode='nearest',
                            coordinate_transformation_mode='asymmetric', nearest_mode='floor')
  m = graph([resize], [1, 1, size_in, 1], [1, 1, size_out, 1], {'sizes': np.array([size_out], np.int64)})
  np.testing.assert_array_equal(run_onnx(m, x), x[:, :, rw.nearest_source_indices(size_in, size_out)])
