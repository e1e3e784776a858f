"""Training-step throughput and memory: the trainer's own jitted step against PyTorch eager.

  PYTHONPATH=. python benchmarks/train_step.py --models ghostnet_100,repghostnet_100 --batch 32

For each model this times :func:`ghostnets_jax.train.step.make_train_step` -- the function the
trainer jits -- built the trainer's way (``experiment.build_model``, ``optim.make_optimizer``,
``optim.make_schedule``, ``run_config.step_config`` from a config) and jitted as the trainer does
(``donate_argnums=0``, the config's compiler options). The recipe features are on (``--recipe
full``, the default): label smoothing 0.1, mixup 0.8 / CutMix 1.0 (timm's defaults, on device),
EMA of the weights and BN statistics, Nesterov SGD with weight decay on the conv/FC weights, the
divergence guard and the metrics. ``--recipe plain`` turns smoothing, mixup and EMA off.

PyTorch runs the same step on the registry's reference model with the same weights, in the same
process, timed in interleaved rounds: ``timm.data.Mixup`` (same alphas, smoothing), soft-target
cross-entropy, ``torch.optim.SGD`` (same momentum, Nesterov, decay only on >= 2-d weights) and
``timm.utils.ModelEmaV3``. ``--torch-compile`` also times ``torch.compile`` of the model.

``--host-memory retain`` sets glibc's malloc for the whole process (both frameworks) as
``--config.host_memory=retain`` does for training (``ghostnets_jax.hostmem``). glibc keeps the
memory a process frees, so a model timed after others runs on the heap they left behind:
``--process-per-model`` gives each model a fresh process (JAX and PyTorch still side by side in
it) and gathers the rows.

Memory: JAX's is XLA's own figure for the compiled step (``compiled.memory_analysis()``:
arguments + outputs - aliased + temporaries; temporaries alone). On a GPU PyTorch's figure is its
allocator's peak above what the model already held (``torch.cuda.max_memory_allocated``). Its CPU
allocator keeps no statistics, so there its figure is the peak growth of the process's resident
memory (sampled every millisecond from ``/proc/self/statm``) during the first step of a fresh
model: the activations, gradients and optimizer buffers the step allocates on top of the model.
The two are not the same measure (XLA's is exact; RSS includes the allocator's slack, and memory that glibc kept
from an earlier model in the same process is reused without growing it, so measure memory one
model per process, as ``benchmarks/memory_curve.py`` does against batch size); read them as
orders of magnitude. ``--remat`` compares ``config.remat`` policies
(``jax.checkpoint``): speed and XLA peak of each.

On a GPU, PyTorch runs channels-last (NHWC, cuDNN's fast layout) with bfloat16 autocast for
``--dtype bfloat16``, and both get a model-FLOPs utilisation: 6 FLOPs per MAC of the model
(``ghostnets_jax.model_info``) per image, over the card's dense peak (``timing.PEAK_TFLOPS``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ghostnets_jax import timing as bm  # noqa: E402

RECIPES = {
    'full': {'label_smoothing': 0.1, 'aug.mixup_alpha': 0.8, 'aug.cutmix_alpha': 1.0,
             'ema.decay': 0.9998},
    'plain': {'label_smoothing': 0.0, 'aug.mixup_alpha': 0.0, 'aug.cutmix_alpha': 0.0,
              'ema.decay': 0.0},
}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--models', default='ghostnet_100,repghostnet_100,ghostnetv2_100,g_ghost_regnetx_032')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--size', type=int, default=None, help="image size (default: the model's own)")
  p.add_argument('--recipe', choices=sorted(RECIPES), default='full')
  p.add_argument('--torch-models', default='all',
                 help="models also timed in PyTorch ('' for none, 'all' for every model)")
  p.add_argument('--torch-compile', action='store_true', help='also time torch.compile (slow to build)')
  p.add_argument('--dtype', choices=('float32', 'bfloat16'), default='float32',
                 help='compute dtype (params stay float32; PyTorch: autocast)')
  p.add_argument('--remat', default='', help="comma-separated config.remat values to compare "
                 "(e.g. 'none,dots_saveable,nothing_saveable'); default: the config's")
  p.add_argument('--threads', type=int, default=None)
  p.add_argument('--min-time', type=float, default=2.0)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--json', default='benchmarks/results/train_step.json')
  p.add_argument('--process-per-model', action='store_true',
                 help='each model in a fresh process (JAX and PyTorch still side by side in it): '
                 'no model then runs on the heap that an earlier one left behind')
  bm.add_host_memory_arg(p)
  return p.parse_args(argv)


def make_config(name: str, a: argparse.Namespace, remat: Optional[str] = None):
  from configs import default
  c = default.get_config()
  default.override(c, {'model': name, 'batch_size': a.batch, 'dtype': a.dtype, 'image_size': a.size,
                       'optim.name': 'sgd', 'optim.lr': 0.1, 'optim.lr_ref_batch': a.batch,
                       'optim.momentum': 0.9, 'optim.nesterov': True, 'optim.weight_decay': 4e-5,
                       **RECIPES[a.recipe]})
  if remat is not None:
    c.remat = remat
  return c


def peak_bytes(compiled: Any) -> tuple[float, float]:
  """(peak, temporaries) of a compiled XLA computation, in bytes."""
  mem = compiled.memory_analysis()
  return (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
          + mem.temp_size_in_bytes, mem.temp_size_in_bytes)


def jax_step(c: Any, variables: dict, size: int) -> dict:
  """The trainer's step for config ``c``, compiled and warmed; a timed call and its memory."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from ghostnets_jax.train import experiment, optim, run_config, state as state_lib, step as step_lib
  model = experiment.build_model(c, 1000)
  schedule = optim.make_schedule(c, steps_per_epoch=1000, total_steps=100_000)
  tx = optim.make_optimizer(c, schedule)
  cfg = run_config.step_config(c, 1000)
  params = variables['params']
  stats = variables.get('batch_stats', {})
  ema = {'params': params, 'batch_stats': stats} if cfg.ema_decay else {}
  state = state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                               opt_state=tx.init(params), ema=ema)
  batch = {'image': jnp.asarray(bm.images(c.batch_size, size)),
           'label': jnp.asarray(np.random.RandomState(1).randint(0, 1000, c.batch_size), jnp.int32),
           'image_id': jnp.arange(c.batch_size, dtype=jnp.int32)}
  fn = step_lib.make_train_step(model, tx, cfg, schedule)
  compiled, compile_s = bm.compile_jit(fn, state, batch, donate_argnums=0,
                                       compiler_options=c.compiler_options.to_dict() or None)
  peak, temp = peak_bytes(compiled)
  holder = [jax.tree.map(jnp.array, state)]  # a copy: the step donates (invalidates) its input

  def call():
    holder[0], m = compiled(holder[0], batch)
    return jax.block_until_ready(m.loss.total)
  return {'call': call, 'compile_s': compile_s, 'peak_mb': peak / 2**20, 'temp_mb': temp / 2**20,
          'compiled': compiled}


def torch_step(ref: Any, c: Any, size: int, compile_model: bool = False) -> Callable[[], Any]:
  """The same step in PyTorch eager (timm's Mixup/CutMix, soft-target CE, SGD, ModelEmaV3)."""
  import numpy as np
  import torch
  from timm.data import Mixup
  from timm.loss import SoftTargetCrossEntropy
  from timm.utils import ModelEmaV3

  from ghostnets_jax import reference_torch
  device, layout = bm.torch_placement()
  ref.to(device, memory_format=layout).train()
  decay = [p for p in ref.parameters() if p.ndim > 1]
  no_decay = [p for p in ref.parameters() if p.ndim <= 1]
  o = c.optim
  opt = torch.optim.SGD([{'params': decay, 'weight_decay': o.weight_decay},
                         {'params': no_decay, 'weight_decay': 0.0}],
                        lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)
  a = c.aug
  mix = (Mixup(mixup_alpha=a.mixup_alpha, cutmix_alpha=a.cutmix_alpha, prob=a.mixup_prob,
               switch_prob=a.mixup_switch_prob, mode=a.mixup_mode,
               label_smoothing=c.label_smoothing, num_classes=1000)
         if a.mixup_alpha > 0 or a.cutmix_alpha > 0 else None)
  ema = ModelEmaV3(ref, decay=c.ema.decay) if c.ema.decay else None
  criterion = SoftTargetCrossEntropy()
  net = torch.compile(ref) if compile_model else ref
  x0 = torch.from_numpy(np.ascontiguousarray(bm.images(c.batch_size, size).transpose(0, 3, 1, 2))).to(
      device, memory_format=layout)
  y0 = torch.from_numpy(np.random.RandomState(1).randint(0, 1000, c.batch_size)).long().to(device)
  eye = torch.eye(1000, device=device)

  def call():
    if mix is not None:
      x, y = mix(x0.clone(), y0)
    else:
      x, y = x0, eye[y0] * (1 - c.label_smoothing) + c.label_smoothing / 1000
    with torch.autocast(device, torch.bfloat16, enabled=c.dtype == 'bfloat16'):
      loss = criterion(reference_torch.logits(net(x)).float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if ema is not None:
      ema.update(ref)
    if device == 'cuda':
      torch.cuda.synchronize()
    return loss
  return call


def torch_peak_mb(call: Callable[[], Any]) -> float:
  """PyTorch's memory for one ``call()`` (MiB): on a GPU the allocator's peak above what was
  allocated before (``torch.cuda.max_memory_allocated``), on the CPU :func:`rss_growth_mb`."""
  import torch
  if not torch.cuda.is_available() or not torch.cuda.is_initialized():
    return rss_growth_mb(call)
  torch.cuda.synchronize()
  before = torch.cuda.memory_allocated()
  torch.cuda.reset_peak_memory_stats()
  call()
  torch.cuda.synchronize()
  return (torch.cuda.max_memory_allocated() - before) / 2**20


def resident_bytes() -> int:
  """The process's resident memory now, in bytes (``/proc/self/statm``, Linux)."""
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def rss_growth_mb(call: Callable[[], Any], interval: float = 1e-3) -> float:
  """Peak growth of the process's resident memory during one ``call()`` (MiB), sampled from
  ``/proc/self/statm`` every ``interval`` seconds by a thread (Linux)."""
  import threading
  import time

  before, peak, done = resident_bytes(), [0], threading.Event()

  def sample():
    while not done.is_set():
      peak[0] = max(peak[0], resident_bytes())
      time.sleep(interval)
  t = threading.Thread(target=sample, daemon=True)
  t.start()
  try:
    call()
  finally:
    done.set()
    t.join()
  return (max(peak[0], resident_bytes()) - before) / 2**20


def bench_model(name: str, a: argparse.Namespace) -> list[dict]:
  import ghostnets_jax as gj
  size = a.size or gj.get_spec(name).input_size
  with_torch = a.torch_models == 'all' or name in a.torch_models.split(',')
  calls: dict[str, Callable[[], Any]] = {}
  torch_rss = None
  if with_torch:
    from ghostnets_jax import reference_torch
    ref, variables = reference_torch.random_pair(name)
    calls['torch'] = torch_step(ref, make_config(name, a), size)
    torch_rss = torch_peak_mb(calls['torch'])   # first: before JAX's compile grows the peak
    if a.torch_compile:
      import copy
      calls['torch_compile'] = torch_step(copy.deepcopy(ref), make_config(name, a), size, True)
  else:
    variables = bm.init_variables_for(name, size)
  remats = a.remat.split(',') if a.remat else [None]
  jax_calls = {}
  rows = []
  for remat in remats:
    c = make_config(name, a, remat)
    j = jax_step(c, variables, size)
    key = f'jax[{c.get("remat", "none")}]'
    jax_calls[key] = j['call']
    rows.append({'model': name, 'batch': a.batch, 'size': size, 'dtype': a.dtype,
                 'recipe': a.recipe, 'remat': c.get('remat', 'none'), 'jax_compile_s': j['compile_s'],
                 'peak_mb': j['peak_mb'], 'temp_mb': j['temp_mb'], 'key': key})
    del j
  seconds = bm.time_calls({**jax_calls, **calls}, a.min_time, a.repeats)
  peak = bm.peak_tflops(a.dtype)
  macs = bm.model_macs(name, size) if peak else 0.0
  for row in rows:
    row['jax_img_s'] = a.batch / seconds[row.pop('key')]
    if peak:
      row['jax_mfu'] = bm.mfu(macs, row['jax_img_s'], peak, train=True)
    if with_torch:
      row.update(reference=reference_torch.source(name), torch_img_s=a.batch / seconds['torch'],
                 torch_rss_growth_mb=torch_rss)
      row['ratio'] = row['jax_img_s'] / row['torch_img_s']
      if peak:
        row['torch_mfu'] = bm.mfu(macs, row['torch_img_s'], peak, train=True)
      if 'torch_compile' in seconds:
        row['torch_compile_img_s'] = a.batch / seconds['torch_compile']
        row['ratio_compile'] = row['jax_img_s'] / row['torch_compile_img_s']
  return rows


def table(rows: list[dict]) -> str:
  compiled = any('torch_compile_img_s' in r for r in rows)
  mfu = any('jax_mfu' in r for r in rows)
  out = ['| model | remat | JAX img/s | PyTorch eager img/s | JAX / eager |'
         + (' torch.compile img/s | JAX / compiled |' if compiled else '')
         + (' JAX MFU | PyTorch MFU |' if mfu else '')
         + ' XLA peak (MiB) | XLA temporaries (MiB) | PyTorch peak growth (MiB) | JAX compile (s) |',
         '|---|---|---:|---:|---:|' + ('---:|---:|' if compiled else '') + ('---:|---:|' if mfu else '')
         + '---:|---:|---:|---:|']
  pct = lambda v: f'{100 * v:.1f}%' if v is not None else '-'
  for r in rows:
    t = (f'{r["torch_img_s"]:.1f} | **{r["ratio"]:.2f}x** |' if 'torch_img_s' in r else '- | - |')
    if compiled:
      t += (f' {r["torch_compile_img_s"]:.1f} | {r["ratio_compile"]:.2f}x |'
            if 'torch_compile_img_s' in r else ' - | - |')
    if mfu:
      t += f' {pct(r.get("jax_mfu"))} | {pct(r.get("torch_mfu"))} |'
    rss = f'{r["torch_rss_growth_mb"]:.0f}' if r.get('torch_rss_growth_mb') is not None else '-'
    out.append(f'| {r["model"]} | {r["remat"]} | {r["jax_img_s"]:.1f} | {t} {r["peak_mb"]:.0f} | '
               f'{r["temp_mb"]:.0f} | {rss} | {r["jax_compile_s"]:.1f} |')
  return '\n'.join(out)


def in_fresh_process(argv: list[str], name: str) -> tuple[dict, list[dict]]:
  """(machine, rows) of this script run with ``argv`` on model ``name`` alone, in a child process
  (its output goes to this one's)."""
  import subprocess
  import tempfile
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'rows.json')
    args = [x for x in argv if x != '--process-per-model'] + ['--models', name, '--json', out]
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *args])
    if proc.returncode:
      raise RuntimeError(f'{name}: the child process failed with exit code {proc.returncode} '
                         '(its output is above)')
    with open(out) as f:
      result = json.load(f)
  return result['machine'], result['rows']


def main(argv: Optional[list[str]] = None) -> list[dict]:
  a = parse_args(argv)
  names = bm.model_names(a.models)             # imports the models; starts nothing of JAX's
  if a.process_per_model and len(names) > 1:   # one model: this process is already fresh
    argv = list(sys.argv[1:] if argv is None else argv)
    rows, machines = [], []
    for name in names:
      info, model_rows = in_fresh_process(argv, name)
      machines.append(info)
      rows += [{**r, 'load_avg_1_5_15': info['load_avg_1_5_15']} for r in model_rows]
    print(table(rows))
    bm.write_json(a.json, machines[0], vars(a), rows, machines=machines)
    return rows
  bm.prepare_process(a.threads, a.host_memory)
  if a.torch_models:
    import torch
    torch.set_num_threads(bm.cpu_threads())
  info = bm.machine()
  print(bm.describe(info), flush=True)
  print(f'recipe {a.recipe}: {json.dumps(RECIPES[a.recipe])}', flush=True)
  rows = []
  for name in names:
    for row in bench_model(name, a):
      rows.append(row)
      print(bm.row_line(row), flush=True)
  print(table(rows))
  print(f'load average after: {", ".join(f"{x:.2f}" for x in os.getloadavg())}')
  bm.write_json(a.json, info, vars(a), rows)
  return rows


if __name__ == '__main__':
  main()
