"""The second-order optimizer of the MultiGrain recipe (PSGD-Kron from psgd-jax) and THOR's
polynomial learning rate."""
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import multigrain
from ghostnets_jax.train import optim
from ghostnets_jax.train.psgd_compat import import_psgd
from tests.train_helpers import run_python


@pytest.mark.xdist_group('second_order')
def test_psgd_kron_multigrain_steps_on_two_devices(tmp_path):
  """A few steps of the MultiGrain recipe (joint CE + margin loss, BatchNorm in train mode) with
  PSGD-Kron on a 2-device data-parallel mesh: finite, decreasing, and the same as on 1 device."""
  p = run_python(['-m', 'tests.second_order_scenario', str(tmp_path)],
                 env={'XLA_FLAGS': '--xla_force_host_platform_device_count=2'})
  log = p.communicate(timeout=900)[0]
  assert p.returncode == 0, log[-3000:]
  r = json.loads((tmp_path / 'result.json').read_text())
  two, one = r['two'], r['one']
  assert two['batch_devices'] == 2 and one['batch_devices'] == 1
  losses = np.array(two['losses'])
  assert np.all(np.isfinite(losses)) and np.all(np.diff(losses) < 0) and losses[-1] < 0.8 * losses[0]
  assert two['bn_stats_changed'] and one['bn_stats_changed']
  assert two['square_factors'] > 10   # Kronecker factors in the optimizer state, not a diagonal
  # data parallelism changes only the summation order: 1 device gives the same run
  np.testing.assert_allclose(one['losses'], two['losses'], rtol=1e-5)
  for k in two['params']:
    np.testing.assert_allclose(one['params'][k], two['params'][k], atol=1e-5)


def test_polynomial_schedule_is_thors_lr():
  # MindSpore's ResNet-50 THOR recipe: lr_init 0.05672, lr_decay 4.9687, lr_end_epoch 70, no
  # warmup; lr = lr_init * (1 - epoch / 70) ** 4.9687, e.g. at epoch 35: 0.05672 * 0.5 ** 4.9687
  c = multigrain.get_config('psgd_kron')
  c.optim.lr, c.optim.lr_ref_batch, c.batch_size = 0.05672, 256, 256
  c.schedule.warmup_epochs, c.schedule.end_epoch = 0.0, 70.0
  spe = 100
  s = optim.make_schedule(c, spe, 45 * spe)
  assert float(s(0)) == pytest.approx(0.05672)
  assert float(s(35 * spe)) == pytest.approx(0.05672 * 0.5 ** 4.9687, rel=1e-5)
  assert float(s(45 * spe)) == pytest.approx(0.05672 * (25 / 70) ** 4.9687, rel=1e-4)
  assert float(s(80 * spe)) == 0.0
  # with a warmup of 2 epochs the decay starts where the warmup ends
  c.schedule.warmup_epochs, c.schedule.warmup_init_lr = 2.0, 0.0
  s = optim.make_schedule(c, spe, 45 * spe)
  assert float(s(spe)) == pytest.approx(0.05672 / 2)
  assert float(s((2 + 35) * spe)) == pytest.approx(0.05672 * 0.5 ** 4.9687, rel=1e-5)
  c.schedule.end_epoch = 0.0
  with pytest.raises(ValueError, match='end_epoch must be > 0'):
    optim.make_schedule(c, spe, 45 * spe)


def test_psgd_kron_config_and_compat_layer():
  c = multigrain.get_config('demo,psgd_kron')
  assert c.optim.name == 'psgd_kron' and c.schedule.name == 'polynomial' and c.schedule.power == 4.9687
  assert multigrain.get_config('psgd_kron').model == 'multigrain_resnet50'
  with pytest.raises(ValueError, match='only one is psgd_kron'):
    multigrain.get_config('demo,kfac')
  # psgd-jax's stale import path resolves to optax's moved clipping module, unchanged
  kron = import_psgd()
  assert sys.modules['optax._src.clipping'] is sys.modules['optax.transforms._clipping']
  assert sys.modules['optax.transforms._clipping'].clip_by_global_norm is optax.clip_by_global_norm
  # an ill-conditioned quadratic (curvatures 1 and 1e4 along the two axes of a 2x2 weight): with
  # the same budget of steps, PSGD-Kron's preconditioner makes both directions progress; momentum
  # SGD, whose lr must stay below 2 (1 + 0.9) / 1e4 to be stable on the steep axis, shrinks the
  # flat one by only ~(1 - 1e-4 / (1 - 0.9)) per step: 0.5 * 2 * 0.82 ** 2 ~ 0.67 after 200 steps.
  h = np.array([[1.0, 1e4]], np.float32)
  loss = lambda w: 0.5 * np.sum(h * w ** 2)  # noqa: E731

  def run(tx, steps=200):
    def body(_, carry):
      w, state = carry
      updates, state = tx.update(h * w, state, w)
      return optax.apply_updates(w, updates), state
    w = jnp.ones((2, 2), jnp.float32)
    w, _ = jax.jit(lambda w: jax.lax.fori_loop(0, steps, body, (w, tx.init(w))))(w)
    return float(loss(np.asarray(w)))
  start = loss(np.ones((2, 2)))
  sgd = run(optax.sgd(1e-4, momentum=0.9))
  psgd = run(kron.kron(3e-2, preconditioner_update_probability=1.0))
  assert psgd < 1e-3 * start and sgd > 0.1   # SGD keeps sum(0.5 * w^2) of the flat axis ~ 1
