"""Training-step throughput: forward, backward, SGD-momentum update and BN statistics, one step.

  PYTHONPATH=. python benchmarks/train_step.py --models ghostnet_100,repghostnet_100 --batch 32

For each model: images/s of one full step (softmax cross-entropy on random labels, dropout on,
``optax.sgd(lr, momentum=0.9)``, BatchNorm batch statistics and running-average update), the
step jitted with the state donated, compiled once (compile time reported) and warmed up; and
its memory from XLA's own analysis of the compiled step (``compiled.memory_analysis()``:
arguments + outputs - aliased + temporaries = the peak the step needs; temporaries alone).
For the models in ``--torch-models`` the same step in PyTorch (the registry's reference in
train mode, ``torch.optim.SGD(momentum=0.9)``, same threads, same weights) is timed alongside.

The step here is a minimal pure function ``(state, images, labels, rng) -> (state, loss)``;
``--step module:function`` times another builder with the signature of :func:`make_train_step`
(e.g. the trainer's, once it is on main).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ghostnets_jax import timing as bm  # noqa: E402

State = tuple  # (params, batch_stats, opt_state)


def make_train_step(model: Any, tx: Any) -> Callable[..., tuple[State, Any]]:
  """``step(state, images, labels, rng) -> (state, loss)`` for ``state = (params, batch_stats,
  opt_state)``: cross-entropy, gradients, one optimizer update, new BN running statistics."""
  import jax
  import optax

  def step(state: State, images: jax.Array, labels: jax.Array, rng: jax.Array) -> tuple[State, jax.Array]:
    params, batch_stats, opt_state = state

    def loss_fn(p):
      logits, updates = model.apply({'params': p, 'batch_stats': batch_stats}, images, train=True,
                                    mutable=['batch_stats'], rngs={'dropout': rng})
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, updates['batch_stats']

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss
  return step


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--models', default='ghostnet_100,repghostnet_100,ghostnetv2_100,g_ghost_regnetx_032')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--size', type=int, default=None, help='image size (default: the model\'s own)')
  p.add_argument('--torch-models', default='ghostnet_100',
                 help="models also timed in PyTorch ('' for none, 'all' for every model)")
  p.add_argument('--dtype', choices=('float32', 'bfloat16'), default='float32',
                 help='compute dtype (params stay float32; PyTorch: autocast)')
  p.add_argument('--lr', type=float, default=0.1)
  p.add_argument('--step', default='', help='module:function building the step (default: ours)')
  p.add_argument('--threads', type=int, default=None)
  p.add_argument('--min-time', type=float, default=2.0)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--json', default='benchmarks/results/train_step.json')
  return p.parse_args(argv)


def jax_step(name: str, variables: dict, batch: int, size: int, a: argparse.Namespace) -> dict:
  """Compiles the step; returns its compile time, memory figures and a timed call."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  import ghostnets_jax as gj
  model = gj.create_model(name, dtype=jnp.bfloat16 if a.dtype == 'bfloat16' else jnp.float32)
  tx = optax.sgd(a.lr, momentum=0.9)
  builder = make_train_step
  if a.step:
    mod, fn = a.step.split(':')
    builder = getattr(importlib.import_module(mod), fn)
  params = variables['params']
  state = (params, variables.get('batch_stats', {}), tx.init(params))
  x = jnp.asarray(bm.images(batch, size))
  y = jnp.asarray(np.random.RandomState(1).randint(0, 1000, batch), jnp.int32)
  rng = jax.random.PRNGKey(0)
  compiled, compile_s = bm.compile_jit(builder(model, tx), state, x, y, rng, donate_argnums=0)
  mem = compiled.memory_analysis()
  peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
          + mem.temp_size_in_bytes)
  holder = [jax.tree.map(jnp.array, state)]  # a copy: the step donates (invalidates) its input

  def call():
    holder[0], loss = compiled(holder[0], x, y, rng)
    return loss.block_until_ready()
  return {'call': call, 'compile_s': compile_s, 'peak_mb': peak / 2**20,
          'temp_mb': mem.temp_size_in_bytes / 2**20}


def torch_step(ref: Any, batch: int, size: int, lr: float, dtype: str) -> Callable[[], Any]:
  import jax
  import numpy as np
  import torch

  from ghostnets_jax import reference_torch
  device = 'cuda' if jax.default_backend() == 'gpu' and torch.cuda.is_available() else 'cpu'
  ref.to(device).train()
  opt = torch.optim.SGD(ref.parameters(), lr=lr, momentum=0.9)
  x = torch.from_numpy(np.ascontiguousarray(bm.images(batch, size).transpose(0, 3, 1, 2))).to(device)
  y = torch.from_numpy(np.random.RandomState(1).randint(0, 1000, batch)).long().to(device)

  def call():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device, torch.bfloat16, enabled=dtype == 'bfloat16'):
      loss = torch.nn.functional.cross_entropy(reference_torch.logits(ref(x)).float(), y)
    loss.backward()
    opt.step()
    if device == 'cuda':
      torch.cuda.synchronize()
    return loss
  return call


def bench_model(name: str, a: argparse.Namespace) -> dict:
  import ghostnets_jax as gj
  size = a.size or gj.get_spec(name).input_size
  with_torch = a.torch_models == 'all' or name in a.torch_models.split(',')
  if with_torch:
    from ghostnets_jax import reference_torch
    ref, variables = reference_torch.random_pair(name)
  else:
    variables = bm.init_variables_for(name, size)
  j = jax_step(name, variables, a.batch, size, a)
  calls = {'jax': j['call']}
  if with_torch:
    calls['torch'] = torch_step(ref, a.batch, size, a.lr, a.dtype)
  seconds = bm.time_calls(calls, a.min_time, a.repeats)
  row = {'model': name, 'batch': a.batch, 'size': size, 'dtype': a.dtype,
         'jax_img_s': a.batch / seconds['jax'],
         'jax_compile_s': j['compile_s'], 'peak_mb': j['peak_mb'], 'temp_mb': j['temp_mb']}
  if with_torch:
    row.update(reference=reference_torch.source(name), torch_img_s=a.batch / seconds['torch'])
    row['ratio'] = row['jax_img_s'] / row['torch_img_s']
  return row


def table(rows: list[dict]) -> str:
  out = ['| model | batch | JAX img/s | PyTorch img/s | JAX / PyTorch | JAX compile (s) | '
         'XLA peak (MiB) | of which temporaries (MiB) |',
         '|---|---:|---:|---:|---:|---:|---:|---:|']
  for r in rows:
    torch_part = (f'{r["torch_img_s"]:.1f} | **{r["ratio"]:.2f}x**' if 'torch_img_s' in r else '- | -')
    out.append(f'| {r["model"]} | {r["batch"]} | {r["jax_img_s"]:.1f} | {torch_part} | '
               f'{r["jax_compile_s"]:.1f} | {r["peak_mb"]:.0f} | {r["temp_mb"]:.0f} |')
  return '\n'.join(out)


def main(argv: Optional[list[str]] = None) -> list[dict]:
  a = parse_args(argv)
  if a.threads:
    bm.limit_cpus(a.threads)
  if a.torch_models:
    import torch
    torch.set_num_threads(bm.cpu_threads())
  info = bm.machine()
  print(bm.describe(info), flush=True)
  rows = []
  for name in bm.model_names(a.models):
    rows.append(bench_model(name, a))
    print('  ' + ', '.join(f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}'
                           for k, v in rows[-1].items()), flush=True)
  print(table(rows))
  bm.write_json(a.json, info, vars(a), rows)
  return rows


if __name__ == '__main__':
  main()
