"""The MultiGrain recipe with PSGD-Kron on simulated devices, run as a subprocess by
tests/test_second_order.py (``XLA_FLAGS=--xla_force_host_platform_device_count=2`` must be set
before JAX is imported).

  python -m tests.second_order_scenario OUT

Writes ``OUT/result.json``: the losses of a few steps on one fixed batch, on a 2-device
data-parallel mesh and on 1 device, and facts about the final state.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from tests.train_helpers import FAST_COMPILE

# a narrow 1-1-1-1 trunk: seconds of compile, still BatchNorm in every block
TINY_BACKBONE = (('depths', (1, 1, 1, 1)), ('widths', (16, 32, 64, 128)), ('stem_width', 16))
IMAGES, REPEATS, SIZE, STEPS = 4, 3, 32, 6


def run(out: str) -> None:
  import jax
  from configs import multigrain
  from ghostnets_jax.train import experiment, mesh as M, optim, run_config, state as S, step as T
  assert jax.device_count() == 2, jax.devices()
  c = multigrain.get_config('demo,psgd_kron')
  c.model_kwargs.backbone_kwargs = TINY_BACKBONE
  c.schedule.warmup_epochs = 0.0
  c.optim.lr = 3e-3
  model = experiment.build_model(c, num_classes=10)
  schedule = optim.make_schedule(c, steps_per_epoch=10, total_steps=30)
  tx = optim.make_optimizer(c, schedule)
  sc = run_config.step_config(c, num_classes=10, steps_per_epoch=10)
  loss_init = T.get_loss(c.loss).init_params
  abstract = S.abstract_state(model, tx, SIZE, False, loss_init)
  rng = np.random.RandomState(0)
  # 4 images, 3 augmentations each (noise around a base image), as the repeated sampler gives
  base = rng.randn(IMAGES, SIZE, SIZE, 3).astype(np.float32)
  ids = np.repeat(np.arange(IMAGES), REPEATS)
  batch = {'image': base[ids] + 0.3 * rng.randn(len(ids), SIZE, SIZE, 3).astype(np.float32),
           'label': (ids % 10).astype(np.int32), 'image_id': ids.astype(np.int32)}
  result = {}
  for name, mesh in (('two', M.make_mesh((-1, 1))), ('one', M.make_mesh((1, 1), devices=jax.devices()[:1]))):
    sh = S.state_shardings(mesh, abstract, c.sharding.fsdp_min_size)
    state = S.create_state(model, tx, SIZE, use_ema=False, rng=jax.random.key(0), shardings=sh,
                           loss_init=loss_init)
    first_stats = np.asarray(jax.tree_util.tree_leaves(state.batch_stats)[0])
    fn = jax.jit(T.make_train_step(model, tx, sc, schedule), out_shardings=(sh, M.replicated(mesh)),
                 compiler_options=FAST_COMPILE)
    losses = []
    for _ in range(STEPS):
      state, m = fn(state, M.global_batch(batch, M.batch_sharding(mesh)))
      losses.append(float(m.compute()['loss']))
    leaves = jax.tree_util.tree_leaves(state.opt_state)
    result[name] = {
        'losses': losses,
        'batch_devices': len(M.global_batch(batch, M.batch_sharding(mesh))['image'].sharding.device_set),
        'bn_stats_changed': bool(np.abs(np.asarray(jax.tree_util.tree_leaves(state.batch_stats)[0])
                                        - first_stats).max() > 0),
        # Kronecker factors: square matrices, one per parameter dimension up to the size limit
        'square_factors': sum(1 for x in leaves if x.ndim == 2 and x.shape[0] == x.shape[1] > 1),
        'params': {str(i): np.asarray(x).ravel()[:64].tolist()
                   for i, x in enumerate(jax.tree_util.tree_leaves(state.params)[:6])},
    }
  with open(os.path.join(out, 'result.json'), 'w') as f:
    json.dump(result, f)


if __name__ == '__main__':
  run(sys.argv[1])
