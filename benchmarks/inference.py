"""Inference throughput (eval mode): ours in JAX against the PyTorch reference, same process.

  PYTHONPATH=. python benchmarks/inference.py --models ghostnet_100,repghostnet_100,ghostnetv2_100,g_ghost_regnetx_032 --batch 1,32 --compare timm

For every model (any registered name or shell pattern) and batch size, both forms are timed:
``train`` (BatchNorm as layers, multi-branch layers as branches) and ``deploy``
(``ghostnets_jax.reparameterize``: BN folded, branches merged). JAX: jitted, compiled once
(compile time reported), warmed up; ``--kernels native`` swaps the fast CPU kernels
(shift-and-add depthwise, 1x1 as matmul, grouped as a dense conv per group) for XLA's convolutions, to see what they bring. PyTorch (``--compare timm``): the registry's reference
(timm / torchvision, or our own PyTorch code for models they lack, see
``ghostnets_jax.reference_torch``) under ``torch.inference_mode`` with as many threads as JAX
uses; its deploy form is timm's ``reparameterize_model`` (which merges RepGhost/GhostNetV3
branches and leaves BN unfused). Both run the same random weights (converted with
``from_torch``); the largest logit difference, relative to the largest logit, is reported.
``--runtimes onnxruntime,mnn,openvino`` also times the deployment runtimes on the deploy form: its
ONNX export (``ghostnets_jax.export.export_onnx``, NCHW, dynamic batch) in onnxruntime (CPU
provider), converted by MNN's converter (``ghostnets_jax.export.mnn``, RepGhost's deploy route) in
MNN (CPU, float32), and in OpenVINO (CPU plugin, float32; ``pip install openvino==2026.4.1``), each
with as many threads as JAX and checked against the JAX logits. ``benchmarks/onnx_peers.py``
compares the export with timm's own ONNX export in the same runtimes.
``--torch-compile`` also times ``torch.compile`` (default mode, inductor) of each PyTorch form,
built before timing and checked against eager. On a GPU, PyTorch runs channels-last (cuDNN's fast
layout) and the table adds each side's model-FLOPs utilisation (2 FLOPs per MAC of the deploy
form, over ``timing.PEAK_TFLOPS``).
Timings interleave all candidates of a row and take the median of ``--repeats`` rounds.
Writes a table to stdout and the rows with the machine description to ``--json``.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ghostnets_jax import timing as bm  # noqa: E402


RUNTIMES = bm.RUNTIMES


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--models', default='ghostnet_100,repghostnet_100,ghostnetv2_100,g_ghost_regnetx_032',
                 help='comma-separated registry names or shell patterns')
  p.add_argument('--batch', default='1,32', help='comma-separated batch sizes')
  p.add_argument('--size', type=int, default=None, help='image size (default: the model\'s own)')
  p.add_argument('--forms', default='train,deploy', help='train, deploy or both')
  p.add_argument('--compare', choices=('timm', 'none'), default='timm',
                 help="'timm': also time the PyTorch reference (timm/torchvision/ours)")
  p.add_argument('--torch-compile', action='store_true',
                 help='also time torch.compile of each PyTorch form (minutes to build on a CPU)')
  p.add_argument('--dtype', choices=('float32', 'bfloat16'), default='float32')
  p.add_argument('--kernels', choices=('auto', 'native'), default='auto',
                 help="JAX conv kernels: 'auto' (the fast CPU forms) or 'native' (XLA's own convs)")
  p.add_argument('--runtimes', default='',
                 help=f'deploy form in deployment runtimes too, comma-separated: {", ".join(RUNTIMES)}')
  bm.add_timing_args(p)
  p.add_argument('--json', default='benchmarks/results/inference.json', help="output file ('' for none)")
  return p.parse_args(argv)


def torch_call(model: Any, x: Any) -> Any:
  import torch

  def call():
    with torch.inference_mode():
      out = model(x)
    if x.is_cuda:
      torch.cuda.synchronize()
    return out
  return call


def bench_model(name: str, batch: int, a: argparse.Namespace) -> list[dict]:
  import jax
  import jax.numpy as jnp
  import numpy as np

  import ghostnets_jax as gj
  from ghostnets_jax.layers import conv_kernels
  size = a.size or gj.get_spec(name).input_size
  dtype = jnp.bfloat16 if a.dtype == 'bfloat16' else jnp.float32
  model = gj.create_model(name, dtype=dtype)
  forms = a.forms.split(',')
  x_np = bm.images(batch, size)
  x = jnp.asarray(x_np)
  calls, compile_s, outs, torch_forms = {}, {}, {}, {}
  if a.compare == 'timm':
    import torch

    from ghostnets_jax import reference_torch
    ref, variables = reference_torch.random_pair(name)
    device, layout = bm.torch_placement()
    tdtype = torch.bfloat16 if a.dtype == 'bfloat16' else torch.float32
    xt = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2))).to(
        device, tdtype, memory_format=layout)
    ref = ref.to(device, tdtype, memory_format=layout)
    rep = reference_torch.deploy(ref) if 'deploy' in forms else ref
    same = set(rep.state_dict()) == set(ref.state_dict())  # nothing to re-parameterize
    for form in forms:
      torch_forms[form] = 'train' if form == 'train' or same else 'deploy'
    torch_models = {'train': ref, **({'deploy': rep} if not same and 'deploy' in forms else {})}
    for form, net in torch_models.items():
      calls[f'torch {form}'] = torch_call(net, xt)
    if a.torch_compile:
      for form, net in torch_models.items():
        calls[f'torch_compile {form}'] = torch_call(torch.compile(net), xt)
        outs[f'torch_compile {form}'] = reference_torch.logits(
            calls[f'torch_compile {form}']()).float().cpu().numpy()   # builds it before timing
    outs['torch'] = reference_torch.logits(calls['torch train']()).float().cpu().numpy()
  else:
    variables = bm.init_variables_for(name, size)
  for form, (m, v) in bm.eval_forms(model, variables).items():
    if form not in forms:
      continue
    with conv_kernels(a.kernels):  # read while tracing
      fn, compile_s[form] = bm.compile_jit(functools.partial(m.apply, train=False), v, x)
    calls[f'jax {form}'] = bm.blocking(fn, v, x)
    outs[form] = np.asarray(fn(v, x), np.float32)
  runtimes = [r for r in a.runtimes.split(',') if r]
  if runtimes:
    x_nchw = np.ascontiguousarray(x_np.transpose(0, 3, 1, 2))
    for rt, call in bm.runtime_calls(model, variables, x_nchw, runtimes, bm.cpu_threads()).items():
      calls[rt] = call
      outs[rt] = np.asarray(call(), np.float32)
  seconds = bm.time_calls(calls, a.min_time, a.repeats)
  peak = bm.peak_tflops(a.dtype)
  macs = bm.model_macs(name, size, deploy=True) if peak else 0.0
  rows = []
  for form in forms:
    row = {'model': name, 'batch': batch, 'size': size, 'form': form, 'dtype': a.dtype,
           'kernels': a.kernels,
           'jax_img_s': batch / seconds[f'jax {form}'], 'jax_compile_s': compile_s[form]}
    if peak:   # both forms against the deploy form's MACs: the work the model must do
      row['jax_mfu'] = bm.mfu(macs, row['jax_img_s'], peak, train=False)
    if torch_forms:
      from ghostnets_jax import reference_torch
      ref_out = outs['torch']
      row.update(reference=reference_torch.source(name), torch_form=torch_forms[form],
                 torch_img_s=batch / seconds[f'torch {torch_forms[form]}'],
                 max_rel_diff=float(np.abs(outs[form] - ref_out).max() / np.abs(ref_out).max()))
      row['ratio'] = row['jax_img_s'] / row['torch_img_s']
      compiled = f'torch_compile {torch_forms[form]}'
      if compiled in seconds:
        row['torch_compile_img_s'] = batch / seconds[compiled]
        row['ratio_compile'] = row['jax_img_s'] / row['torch_compile_img_s']
        row['torch_compile_max_rel_diff'] = float(np.abs(outs[compiled] - ref_out).max()
                                                  / np.abs(ref_out).max())
      if peak:
        row['torch_mfu'] = bm.mfu(macs, row['torch_img_s'], peak, train=False)
    if form == 'deploy':
      for rt in runtimes:
        row[f'{rt}_img_s'] = batch / seconds[rt]
        row[f'{rt}_max_abs_diff'] = float(np.abs(outs[rt] - outs[form]).max())
    rows.append(row)
  return rows


def table(rows: list[dict]) -> str:
  has_torch = any('torch_img_s' in r for r in rows)
  head = '| model | batch | form | JAX img/s |'
  line = '|---|---:|---|---:|'
  if has_torch:
    head += ' PyTorch img/s | JAX / PyTorch | reference |'
    line += '---:|---:|---|'
  has_compile = any('torch_compile_img_s' in r for r in rows)
  if has_compile:
    head += ' torch.compile img/s | JAX / torch.compile |'
    line += '---:|---:|'
  head += ' JAX compile (s) |' + (' max rel. diff |' if has_torch else '')
  line += '---:|' + ('---:|' if has_torch else '')
  mfu = any('jax_mfu' in r for r in rows)
  if mfu:
    head += ' JAX MFU | PyTorch MFU |'
    line += '---:|---:|'
  runtimes = [rt for rt in RUNTIMES if any(f'{rt}_img_s' in r for r in rows)]
  for rt in runtimes:
    head += f' {rt} img/s | {rt} max abs diff |'
    line += '---:|---:|'

  out = [head, line]
  for r in rows:
    s = f'| {r["model"]} | {r["batch"]} | {r["form"]} | {r["jax_img_s"]:.1f} |'
    if has_torch:
      ref = r['reference'] + (' (reparameterized)' if r['torch_form'] == 'deploy' else '')
      s += f' {r["torch_img_s"]:.1f} | **{r["ratio"]:.2f}x** | {ref} |'
    if has_compile:
      s += (f' {r["torch_compile_img_s"]:.1f} | **{r["ratio_compile"]:.2f}x** |'
            if 'torch_compile_img_s' in r else ' - | - |')
    s += f' {r["jax_compile_s"]:.1f} |' + (f' {r["max_rel_diff"]:.1e} |' if has_torch else '')
    if mfu:
      s += ''.join(f' {100 * r[k]:.1f}% |' if r.get(k) is not None else ' - |' for k in ('jax_mfu', 'torch_mfu'))
    for rt in runtimes:
      s += (f' {r[f"{rt}_img_s"]:.1f} | {r[f"{rt}_max_abs_diff"]:.1e} |' if f'{rt}_img_s' in r else ' - | - |')
    out.append(s)
  return '\n'.join(out)


def main(argv: Optional[list[str]] = None) -> list[dict]:
  a = parse_args(argv)
  unknown = {r for r in a.runtimes.split(',') if r} - set(RUNTIMES)
  if unknown:
    raise SystemExit(f'--runtimes: unknown {sorted(unknown)}; choose from {", ".join(RUNTIMES)}')
  bm.prepare_process(a.threads, a.host_memory)
  if a.compare == 'timm':
    import torch
    torch.set_num_threads(bm.cpu_threads())
  info = bm.machine()
  print(bm.describe(info), flush=True)
  rows = []
  for name in bm.model_names(a.models):
    for batch in (int(b) for b in a.batch.split(',')):
      new = bench_model(name, batch, a)
      rows += new
      for r in new:
        print(bm.row_line(r), flush=True)
  print(table(rows))
  bm.write_json(a.json, info, vars(a), rows)
  return rows


if __name__ == '__main__':
  main()
