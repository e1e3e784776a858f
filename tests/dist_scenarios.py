"""Multi-device scenarios, run as subprocesses by tests/test_train_system.py
(``XLA_FLAGS=--xla_force_host_platform_device_count=N`` must be set before JAX is imported).
Multi-process runs (SLURM-style and explicit coordinator flags) are in
tests/reliability/test_multihost.py.

  python -m tests.dist_scenarios devices8 OUT

Results go to ``OUT/result*.json`` (+ ``.npz``); the test asserts on them.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from tests.train_helpers import FAST_COMPILE, TINY_CFGS, flat, max_rel_diff

BATCH, SIZE = 16, 32


def tiny_model_and_tx():
  import optax
  from ghostnets_jax import create_model
  model = create_model('ghostnet_050', num_classes=10, drop_rate=0.0).clone(cfgs=TINY_CFGS,
                                                                             head_chs=64)
  return model, optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(0.1, momentum=0.9))


def devices8(out: str) -> None:
  """Same global batch: 1 device vs 8 (data parallel) vs 2x4 (FSDP); grouped BN; checkpoint."""
  import jax
  from ghostnets_jax.layers import batch_norm_groups
  from ghostnets_jax.train import mesh as M, state as S, step as T
  from ghostnets_jax.train.checkpoint import Checkpointer
  assert jax.device_count() == 8, jax.devices()
  model, tx = tiny_model_and_tx()
  abstract = S.abstract_state(model, tx, SIZE, use_ema=True)
  rng = np.random.RandomState(0)
  batch = {'image': rng.randn(BATCH, SIZE, SIZE, 3).astype(np.float32),
           'label': rng.randint(0, 10, BATCH).astype(np.int32)}
  one = M.make_mesh((1, 1), devices=jax.devices()[:1])
  init = S.create_state(model, tx, SIZE, use_ema=True, rng=jax.random.key(0),
                        shardings=S.state_shardings(one, abstract, 2 ** 14))

  def run(mesh, min_size=2 ** 14, bn_groups=1, steps=2):
    sh = S.state_shardings(mesh, abstract, min_size)
    state = jax.device_put(init, sh)
    cfg = T.StepConfig(num_classes=10, ema_decay=0.9, bn_groups=bn_groups, label_smoothing=0.1)
    fn = jax.jit(T.make_train_step(model, tx, cfg, lambda s: 0.1),
                 out_shardings=(sh, M.replicated(mesh)), compiler_options=FAST_COMPILE)
    losses = []
    for _ in range(steps):
      state, m = fn(state, M.global_batch(batch, M.batch_sharding(mesh)))
      losses.append(float(m.compute()['loss']))
    return state, losses, sh

  s1, l1, _ = run(one)
  s8, l8, sh8 = run(M.make_mesh((-1, 1)))
  sf, lf, shf = run(M.make_mesh((2, 4)), min_size=256)
  fsdp_sharded = sum('fsdp' in str(s.spec) for s in jax.tree_util.tree_leaves(shf.params))
  res = {'loss_1dev': l1, 'loss_8dev': l8, 'loss_fsdp': lf,
         'rel_8dev_vs_1dev': max_rel_diff(flat(s8), flat(s1)),
         'rel_fsdp_vs_8dev': max_rel_diff(flat(sf), flat(s8)),
         'fsdp_sharded_param_leaves': fsdp_sharded,
         'param_leaves': len(jax.tree_util.tree_leaves(shf.params))}

  # Grouped BN: 8 devices, groups of 2 devices (4 groups of 4 examples) == each group alone.
  mesh8 = M.make_mesh((-1, 1))
  variables = jax.device_put(s1.variables(), M.replicated(mesh8))
  x8 = M.global_batch({'x': batch['image']}, M.batch_sharding(mesh8))['x']

  def fwd(groups):
    def f(v, x):
      with batch_norm_groups(groups):
        return model.apply(v, x, train=True, mutable=['batch_stats'])
    return jax.jit(f, compiler_options=FAST_COMPILE)

  grouped, upd = fwd(M.bn_num_groups(mesh8, 2))(variables, x8)
  alone = fwd(1)
  parts = [alone(s1.variables(), batch['image'][4 * g:4 * g + 4]) for g in range(4)]
  ref_logits = np.concatenate([np.asarray(p[0]) for p in parts])
  ref_stats = jax.tree_util.tree_map(lambda *xs: np.mean(xs, 0), *[p[1] for p in parts])
  res['grouped_bn_logits_maxdiff'] = float(np.max(np.abs(np.asarray(grouped) - ref_logits)))
  res['grouped_bn_stats_rel'] = max_rel_diff(flat(upd), flat(ref_stats))
  res['global_bn_logits_maxdiff'] = float(np.max(np.abs(
      np.asarray(fwd(1)(variables, x8)[0]) - ref_logits)))

  ck = Checkpointer(os.path.join(out, 'ckpt'), async_save=True)
  ck.save(2, s8, {'epoch': 0, 'batch': 2, 'steps_per_epoch': 10})
  ck.wait()
  ck.close()
  res['saved_shardings'] = sorted({str(s.spec) for s in jax.tree_util.tree_leaves(sh8)})
  np.savez(os.path.join(out, 'state8.npz'), **flat(s8))
  with open(os.path.join(out, 'result.json'), 'w') as f:
    json.dump(res, f, indent=1)


if __name__ == '__main__':
  name, out = sys.argv[1], sys.argv[2]
  os.makedirs(out, exist_ok=True)
  if name == 'devices8':
    devices8(out)
  else:
    raise SystemExit(f'unknown scenario {name}')
