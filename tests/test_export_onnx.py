"""ONNX export, registry-driven: onnx.checker + onnxruntime vs JAX at batch 1 and 4 from one graph."""
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

from ghostnets_jax.export import ExportError, verify_onnx
from ghostnets_jax.export.onnx import compare
from ghostnets_jax.export.rewrites import attributes, op_types
from ghostnets_jax.layers import (avg_pool_2x2, export_lowering, global_avg_pool, hard_sigmoid, hard_swish,
                                  max_pool_3x3_s2, nearest_resize)
from tests.export_helpers import export_cases, exported, jax_logits, lowered_op_counts
from tests.helpers import SMALL


@pytest.mark.parametrize('name', [pytest.param(n, marks=pytest.mark.xdist_group(f'export_{n}'))
                                  for n in export_cases()])
def test_onnx_export_matches_jax(name):
  proto = exported(name)
  result = verify_onnx(proto, jax_logits(name), (SMALL, SMALL, 3), batch_sizes=(1, 4))
  assert set(result.max_abs_diff) == {1, 4} and max(result.max_abs_diff.values()) < 1e-4
  assert result.max_abs_reference > 0.1  # logits of a real size, so 1e-4 means something
  # one graph, dynamic batch, NCHW input
  dims = proto.graph.input[0].type.tensor_type.shape.dim
  assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, SMALL, SMALL]
  ops = op_types(proto)
  # native depthwise: grouped Conv nodes, not shift-and-add slices; layout transposes cancelled;
  # the deploy form has no BatchNormalization; no shape arithmetic on the batch
  # (grouped convs and channel slices: as many as the model's own lowered jaxpr has)
  expected = lowered_op_counts(name)
  grouped = sum(attributes(n).get('group', 1) > 1 for n in proto.graph.node if n.op_type == 'Conv')
  assert grouped == expected['grouped_conv']
  assert ops.get('Slice', 0) <= expected['slice'] and 'BatchNormalization' not in ops
  assert ops.get('Transpose', 0) <= 2 and not {'Shape', 'Expand', 'ConstantOfShape'} & set(ops)
  # nearest upsampling as Resize (not per-element gathers), hard sigmoid / swish one node each
  assert not {'Gather', 'Clip'} & set(ops)
  assert all(n.domain in ('', 'ai.onnx') for n in proto.graph.node)
  meta = {p.key: p.value for p in proto.metadata_props}
  assert meta['layout'] == 'NCHW' and meta['deploy'] == 'True'


@pytest.mark.xdist_group('export_nhwc')
def test_nhwc_layout_and_verification_failures():
  name = 'ghostnet_100'
  proto = exported(name, 'NHWC')
  dims = proto.graph.input[0].type.tensor_type.shape.dim
  assert [d.dim_value for d in dims[1:]] == [SMALL, SMALL, 3]
  verify_onnx(proto, jax_logits(name), (SMALL, SMALL, 3), layout='NHWC')
  # the checks can fail: a wrong reference, a wrong layout
  with pytest.raises(ExportError, match='exceeds'):
    verify_onnx(proto, lambda x: jax_logits(name)(x) + 1e-3, (SMALL, SMALL, 3), layout='NHWC')
  with pytest.raises(ExportError, match=r"takes input \[64, 64, 3\].*layout='NCHW' feeds "
                     r"\[3, 64, 64\]; pass layout='NHWC'"):
    verify_onnx(proto, jax_logits(name), (SMALL, SMALL, 3), layout='NCHW')
  with pytest.raises(ExportError, match=r'feeds \[32, 32, 3\]; pass the input_shape'):
    verify_onnx(proto, jax_logits(name), (32, 32, 3), layout='NHWC')
  broken = onnx.ModelProto()
  broken.CopyFrom(proto)
  broken.graph.node[0].input[0] = 'no_such_value'
  with pytest.raises(ExportError, match='onnx.checker'):
    verify_onnx(broken, jax_logits(name), (SMALL, SMALL, 3), layout='NHWC')


def test_compare_rejects_shape_and_nan():
  ref = np.zeros((2, 3), np.float32)
  with pytest.raises(ExportError, match='shape'):
    compare('x', lambda x: np.zeros((2, 4)), ref, np.zeros((2, 1)), 1e-4)
  with pytest.raises(ExportError, match='exceeds'):
    compare('x', lambda x: np.full((2, 3), np.nan), ref, np.zeros((2, 1)), 1e-4)


@pytest.mark.parametrize('hw,size', [((8, 8), (16, 16)), ((7, 9), (7, 9)), ((3, 4), (7, 9)), ((4, 4), (8, 12))])
def test_export_lowering_computes_the_same(hw, size):
  x = jnp.asarray(np.random.RandomState(0).randn(2, *hw, 3).astype(np.float32))
  with export_lowering():
    pooled, resized, maxed = avg_pool_2x2(x), nearest_resize(x, size), max_pool_3x3_s2(x)
  np.testing.assert_allclose(np.asarray(pooled), np.asarray(avg_pool_2x2(x)), atol=1e-6)
  np.testing.assert_array_equal(np.asarray(maxed), np.asarray(max_pool_3x3_s2(x)))
  np.testing.assert_array_equal(np.asarray(resized), np.asarray(nearest_resize(x, size)))
  with export_lowering():
    gated, swished = hard_sigmoid(4 * x), hard_swish(4 * x)
    pooled_all, pooled_keep = global_avg_pool(x), global_avg_pool(x, True)
  np.testing.assert_allclose(np.asarray(gated), np.asarray(hard_sigmoid(4 * x)), atol=1e-6)
  np.testing.assert_allclose(np.asarray(swished), np.asarray(hard_swish(4 * x)), atol=1e-6)
  np.testing.assert_allclose(np.asarray(pooled_all), np.asarray(x).mean(axis=(1, 2)), atol=1e-6)
  np.testing.assert_allclose(np.asarray(pooled_keep), np.asarray(x).mean(axis=(1, 2), keepdims=True), atol=1e-6)
  jaxpr = str(jax.make_jaxpr(lambda x: nearest_resize(x, size))(x))
  with export_lowering():
    jaxpr_export = str(jax.make_jaxpr(lambda x: (avg_pool_2x2(x), nearest_resize(x, size)))(x))
  assert 'reduce_window_sum' in jaxpr_export and 'reduce_window' not in jaxpr
  assert size == hw or 'gather' in jaxpr_export
