"""Registry-driven checks: every registered model gets these with no new test code."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ghostnets_jax as gj
from ghostnets_jax.complexity import param_count
from tests.helpers import (FAST_COMPILE, SMALL, compiled_cases, jitted_apply, model_and_variables,
                           one_per_architecture)
from tests.torch_ref import reference_param_count

ALL = gj.list_models()


@pytest.mark.parametrize('name', compiled_cases(ALL))
def test_forward_shapes_and_param_count(name):
  model, variables = model_and_variables(name)
  assert set(variables) == {'params', 'batch_stats'}
  x = jax.random.normal(jax.random.PRNGKey(1), (2, SMALL, SMALL, 3))
  out = jitted_apply(model)(variables, x)
  assert out.shape == (2, 10) and out.dtype == jnp.float32
  assert np.isfinite(np.asarray(out)).all()
  # the count of the network's PyTorch reference (timm / torchvision, or our torch code written
  # from the published structure), counted by torch from its modules
  assert param_count(variables) == reference_param_count(name, 10)


@pytest.mark.parametrize('name', sorted(set(ALL) - set(compiled_cases(ALL))))
def test_other_widths_shapes_and_param_count_uncompiled(name):
  """The widths the compiled check leaves to their parity test: output shape and dtype, and
  parameter count (against the PyTorch reference's), from shapes alone."""
  model = gj.create_model(name, num_classes=10)
  x = jax.ShapeDtypeStruct((2, SMALL, SMALL, 3), jnp.float32)
  out, variables = jax.eval_shape(functools.partial(model.init_with_output, train=False),
                                  jax.random.PRNGKey(0), x)
  assert set(variables) == {'params', 'batch_stats'}
  assert out.shape == (2, 10) and out.dtype == jnp.float32
  assert param_count(variables) == reference_param_count(name, 10)


@pytest.mark.parametrize('name', one_per_architecture(ALL))
def test_train_mode_updates_batch_stats_and_uses_dropout_rng(name):
  model, variables = model_and_variables(name)
  x = jax.random.normal(jax.random.PRNGKey(2), (2, SMALL, SMALL, 3))
  out, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'],
                                                  rngs={'dropout': jax.random.PRNGKey(0)}),
                         compiler_options=FAST_COMPILE)(variables, x)
  assert out.shape == (2, 10)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables['batch_stats'],
                         updates['batch_stats'])
  assert all(jax.tree.leaves(changed))


def test_bfloat16_compute_keeps_float32_params():
  f32_model, variables = model_and_variables('ghostnetv2_100')
  model = f32_model.clone(dtype=jnp.bfloat16)
  x = jax.random.normal(jax.random.PRNGKey(4), (2, SMALL, SMALL, 3))
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0), x)
  assert {l.dtype for l in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
  jaxpr = str(jax.make_jaxpr(model.apply)(variables, x))
  assert 'bf16[2,32,32,' in jaxpr  # activations computed in bfloat16
  f32 = jitted_apply(f32_model)(variables, x)
  bf16 = jitted_apply(model)(variables, x)
  assert bf16.dtype == jnp.float32
  # bfloat16 keeps 8 significant bits (rounding 2**-9 per op; convs accumulate in float32): the
  # logits move by ~0.6 % of the largest, far less than they differ between the two images. Bounds
  # 2 % of the largest logit and 10 % of the between-image spread (at 5 % of the largest logit a
  # model whose logits ignored the input could pass).
  f32, bf16 = np.asarray(f32, np.float64), np.asarray(bf16, np.float64)
  err, spread = np.abs(bf16 - f32).max(), np.abs(f32 - f32.mean(0)).max()
  assert spread > 0.1 and err < 0.1 * spread and err < 0.02 * np.abs(f32).max(), (err, spread)


@pytest.mark.parametrize('bad,msg', [
    (np.zeros((SMALL, SMALL, 3), np.float32), r'expected images of shape \(batch, height, width, 3\).*x\[None\]'),
    (np.zeros((1, 3, SMALL, SMALL), np.float32), r'expected 3 channels.*NCHW'),
    (np.zeros((1, SMALL, SMALL, 1), np.float32), r'expected 3 channels in the last axis'),
    (np.zeros((1, SMALL, SMALL, 3), np.uint8), r'expected floating-point images, got dtype uint8'),
])
def test_bad_inputs_have_clear_errors(bad, msg):
  model, variables = model_and_variables('ghostnet_050')
  with pytest.raises(ValueError, match=msg):
    model.apply(variables, bad)
