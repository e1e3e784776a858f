"""Our ONNX export against timm's ONNX export of the same weights, in the same runtimes.

  PYTHONPATH=. python benchmarks/onnx_peers.py --models ghostnet_100,repghostnet_100,ghostnetv2_100,ghostnetv3_100 --batch 1,32 --runtimes onnxruntime,openvino

For every model (registry names whose PyTorch reference is timm's) both deploy-form graphs hold
the same random weights (``ghostnets_jax.reference_torch.random_pair``):

* ours: ``ghostnets_jax.export.export_onnx`` (re-parameterized, NCHW, dynamic batch);
* timm's: ``timm.utils.onnx.onnx_export`` (what timm's ``onnx_export.py`` runs: PyTorch's
  TorchScript exporter at its default opset, dynamic batch) of timm's deploy form
  (``timm.utils.reparameterize_model``, see ``ghostnets_jax.reference_torch.deploy``).

Each graph is used as its exporter writes it. Each runtime runs both with the same settings
(``ghostnets_jax.timing.runtime_runners``: onnxruntime's CPU provider with its default graph
optimisations, OpenVINO's CPU plugin in float32 (``INFERENCE_PRECISION_HINT=f32``), MNN after its
converter), on as many threads as this process may use (``--threads`` to limit), on the same
input. All candidates of a row are timed in interleaved rounds, median of ``--repeats``.

Reported: img/s of each graph in each runtime and ours / timm's; the graphs' node counts per op
type; the largest difference between the logits of all graph/runtime pairs, relative to the
largest logit. ``--save-dir`` keeps both ONNX files of every model. Writes a table to stdout and
the rows with the machine description to ``--json``.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ghostnets_jax import timing as bm  # noqa: E402

GRAPHS = ('ours', 'timm')


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--models', default='ghostnet_100,repghostnet_100,ghostnetv2_100,ghostnetv3_100',
                 help='comma-separated registry names or shell patterns (timm references only)')
  p.add_argument('--batch', default='1,32', help='comma-separated batch sizes')
  p.add_argument('--size', type=int, default=None, help="image size (default: the model's own)")
  p.add_argument('--runtimes', default='onnxruntime,openvino',
                 help=f'comma-separated, from {", ".join(bm.RUNTIMES)}')
  bm.add_timing_args(p)
  p.add_argument('--save-dir', default='', help='also write <model>_ours.onnx / <model>_timm.onnx here')
  p.add_argument('--json', default='benchmarks/results/onnx_peers.json', help="output file ('' for none)")
  return p.parse_args(argv)


def timm_onnx(module: Any, size: int, path: str) -> Any:
  """timm's export of ``module`` (its own ``onnx_export``: TorchScript exporter, dynamic batch)."""
  import onnx
  import torch
  from timm.utils.onnx import onnx_export
  onnx_export(module, path, example_input=torch.zeros(2, 3, size, size), input_names=['images'],
              output_names=['logits'])
  return onnx.load(path)


def export_pair(name: str, size: int, save_dir: str = '') -> dict[str, Any]:
  """``{'ours': proto, 'timm': proto}``: both deploy-form exports of one random-weight pair."""
  import ghostnets_jax as gj
  from ghostnets_jax import reference_torch
  from ghostnets_jax.export import export_onnx
  lib = reference_torch.source(name).partition(':')[0]
  if lib != 'timm':
    raise SystemExit(f'{name}: its PyTorch reference is {reference_torch.source(name)}, not timm')
  ref, variables = reference_torch.random_pair(name)
  protos = {'ours': export_onnx(gj.create_model(name), variables, size)}
  with tempfile.TemporaryDirectory() as d:
    protos['timm'] = timm_onnx(reference_torch.deploy(ref), size, os.path.join(save_dir or d, f'{name}_timm.onnx'))
  if save_dir:
    import onnx
    onnx.save(protos['ours'], os.path.join(save_dir, f'{name}_ours.onnx'))
  return protos


def versions(runtimes: list[str]) -> dict[str, str]:
  """Versions of the exporters and of the runtimes (OpenVINO's import names its install)."""
  import onnx
  import timm
  out = {'timm': timm.__version__, 'onnx': onnx.__version__}
  if 'onnxruntime' in runtimes:
    import onnxruntime
    out['onnxruntime'] = onnxruntime.__version__
  if 'openvino' in runtimes:
    from ghostnets_jax.export.openvino import import_openvino
    out['openvino'] = import_openvino().__version__.split('-')[0]
  return out


def graph_info(proto: Any) -> dict[str, Any]:
  from ghostnets_jax.export.rewrites import onnx_opset, op_types
  ops = op_types(proto)
  return {'nodes': sum(ops.values()), 'opset': onnx_opset(proto), 'ops': ops}


def bench(name: str, protos: dict[str, Any], batch: int, size: int, runtimes: list[str],
          a: argparse.Namespace) -> dict[str, Any]:
  import numpy as np
  x = np.ascontiguousarray(bm.images(batch, size).transpose(0, 3, 1, 2))
  calls, outs = {}, {}
  for graph, proto in protos.items():
    for rt, run in bm.runtime_runners(proto, runtimes, bm.cpu_threads()).items():
      calls[f'{rt} {graph}'] = lambda run=run: run(x)
      outs[f'{rt} {graph}'] = np.asarray(run(x), np.float32)
  seconds = bm.time_calls(calls, a.min_time, a.repeats)
  scale = max(float(np.abs(o).max()) for o in outs.values())
  diff = max(float(np.abs(p - q).max()) for p, q in itertools.combinations(outs.values(), 2))
  row: dict[str, Any] = {'model': name, 'batch': batch, 'size': size}
  for rt in runtimes:
    for graph in GRAPHS:
      row[f'{rt}_{graph}_img_s'] = batch / seconds[f'{rt} {graph}']
    row[f'{rt}_ratio'] = row[f'{rt}_ours_img_s'] / row[f'{rt}_timm_img_s']
  row.update(max_abs_diff=diff, max_rel_diff=diff / scale, max_abs_logit=scale)
  return row


def op_summary(ops: dict[str, int], top: int = 8) -> str:
  common = sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))
  rest = sum(n for _, n in common[top:])
  return ', '.join(f'{k} {n}' for k, n in common[:top]) + (f', other {rest}' if rest else '')


def table(rows: list[dict], runtimes: list[str], graphs: dict[str, dict]) -> str:
  head = '| model | batch |' + ''.join(f' {rt} ours img/s | {rt} timm img/s | {rt} ours / timm |'
                                      for rt in runtimes) + ' max rel. logit diff |'
  out = [head, '|---|---:|' + '---:|---:|---:|' * len(runtimes) + '---:|']
  for r in rows:
    out.append(f'| {r["model"]} | {r["batch"]} |' + ''.join(
        f' {r[f"{rt}_ours_img_s"]:.1f} | {r[f"{rt}_timm_img_s"]:.1f} | **{r[f"{rt}_ratio"]:.2f}x** |'
        for rt in runtimes) + f' {r["max_rel_diff"]:.1e} |')
  out += ['', '| model | graph | opset | nodes | op types (most frequent first) |', '|---|---|---:|---:|---|']
  for name, info in graphs.items():
    for graph in GRAPHS:
      g = info[graph]
      out.append(f'| {name} | {graph} | {g["opset"]} | {g["nodes"]} | {op_summary(g["ops"])} |')
  return '\n'.join(out)


def main(argv: Optional[list[str]] = None) -> list[dict]:
  a = parse_args(argv)
  runtimes = [r for r in a.runtimes.split(',') if r]
  try:
    bm.check_runtimes(runtimes)
  except ValueError as e:
    raise SystemExit(f'--runtimes: {e}') from None
  bm.prepare_process(a.threads, a.host_memory)
  import torch
  torch.set_num_threads(bm.cpu_threads())
  if a.save_dir:
    os.makedirs(a.save_dir, exist_ok=True)
  from ghostnets_jax.registry import get_spec
  tools = versions(runtimes)
  info = {**bm.machine(), **tools}
  print(bm.describe(info) + '; ' + ', '.join(f'{k} {v}' for k, v in tools.items()), flush=True)
  rows, graphs = [], {}
  for name in bm.model_names(a.models):
    size = a.size or get_spec(name).input_size
    protos = export_pair(name, size, a.save_dir)
    graphs[name] = {g: graph_info(p) for g, p in protos.items()}
    for batch in (int(b) for b in a.batch.split(',')):
      row = bench(name, protos, batch, size, runtimes, a)
      rows.append(row)
      print(bm.row_line(row), flush=True)
  print(table(rows, runtimes, graphs))
  bm.write_json(a.json, info, vars(a), rows, graphs=graphs)
  return rows


if __name__ == '__main__':
  main()
