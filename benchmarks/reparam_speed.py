"""Inference throughput of the deploy (re-parameterized) form against the train form.

  PYTHONPATH=. python benchmarks/reparam_speed.py                  # repghostnet_100, ghostnetv3_100
  PYTHONPATH=. python benchmarks/reparam_speed.py --models ghostnetv3_050 --batch 8 --size 160

For each model both forms are jitted, warmed up and timed in the same process on the same input
(eval mode, float32, the variables of ``init`` with random BN statistics; the deploy variables
come from ``ghostnets_jax.reparameterize``). Timings alternate between the two forms and
report the median of ``--repeats`` rounds, so load from other processes hits both alike.
"""
from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import ghostnets_jax as gj
from ghostnets_jax.initialize import init_variables
from ghostnets_jax.complexity import param_count


def _random_bn_stats(variables: dict, seed: int = 0) -> dict:
  rng = np.random.RandomState(seed)
  stats = jax.tree.map(lambda a: jnp.asarray(rng.uniform(0.5, 1.5, a.shape), a.dtype),
                       variables['batch_stats'])
  return {**variables, 'batch_stats': stats}


def _seconds_per_batch(fn, variables, x, iters: int) -> float:
  t = time.perf_counter()
  for _ in range(iters):
    out = fn(variables, x)
  jax.block_until_ready(out)
  return (time.perf_counter() - t) / iters


def benchmark(name: str, batch: int, size: int, iters: int, repeats: int) -> dict:
  model = gj.create_model(name)
  variables = _random_bn_stats(init_variables(model, (1, size, size, 3)))
  deploy_model, deploy_vars = gj.reparameterize(model, variables)
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, size, size, 3))
  forms = {'train': (jax.jit(functools.partial(model.apply, train=False)), variables),
           'deploy': (jax.jit(functools.partial(deploy_model.apply, train=False)), deploy_vars)}
  outs = {k: fn(v, x) for k, (fn, v) in forms.items()}  # compile + warm up
  for k, (fn, v) in forms.items():
    _seconds_per_batch(fn, v, x, 1)
  err = float(jnp.abs(outs['train'] - outs['deploy']).max() / jnp.abs(outs['train']).max())
  times = {k: [] for k in forms}
  for _ in range(repeats):
    for k, (fn, v) in forms.items():
      times[k].append(_seconds_per_batch(fn, v, x, iters))
  ips = {k: batch / statistics.median(t) for k, t in times.items()}
  return {'model': name, 'train': ips['train'], 'deploy': ips['deploy'],
          'ratio': ips['deploy'] / ips['train'], 'rel_err': err,
          'train_params': param_count(variables), 'deploy_params': param_count(deploy_vars)}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--models', nargs='+', default=['repghostnet_100', 'ghostnetv3_100'])
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--size', type=int, default=224)
  p.add_argument('--iters', type=int, default=5)
  p.add_argument('--repeats', type=int, default=5)
  a = p.parse_args()
  print(f'backend {jax.default_backend()} ({jax.devices()[0].device_kind}), batch {a.batch}, '
        f'{a.size}x{a.size}, median of {a.repeats} x {a.iters} batches')
  print(f'{"model":18s} {"train img/s":>12s} {"deploy img/s":>13s} {"deploy/train":>13s} '
        f'{"params train -> deploy":>24s} {"max rel diff":>13s}')
  for name in a.models:
    r = benchmark(name, a.batch, a.size, a.iters, a.repeats)
    print(f'{name:18s} {r["train"]:12.1f} {r["deploy"]:13.1f} {r["ratio"]:12.2f}x '
          f'{r["train_params"] / 1e6:11.2f}M -> {r["deploy_params"] / 1e6:.2f}M {r["rel_err"]:13.1e}',
          flush=True)


if __name__ == '__main__':
  main()
