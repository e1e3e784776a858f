"""The model zoo, generated from the registry (never typed by hand).

  python -m ghostnets_jax.zoo                  # print the model table of docs/models.md
  python -m ghostnets_jax.zoo --update-table   # rewrite it between the markers in docs/models.md
  python -m ghostnets_jax.zoo --check          # also build and run every model once on CPU
  python -m ghostnets_jax.zoo --report         # docs/zoo.md + plots, CPU latency measured here
  python -m ghostnets_jax.zoo --report --reuse-latency   # measure only what docs/zoo.json lacks
  python -m ghostnets_jax.zoo --report --no-latency      # nothing measured ('-' where unknown)
  python -m ghostnets_jax.zoo --report --runtimes onnxruntime,mnn   # deploy runtimes too

The report lists params, MACs and activations (``model_info``), the measured CPU latency of the
deploy form at batch 1 (``ghostnets_jax.timing.latency``: jitted, warm, median of interleaved
rounds, float32) and the published top-1, and plots accuracy against MACs and against latency.
With ``--runtimes``, the same deploy form's ONNX export is also timed in ONNX Runtime (CPU
provider), in MNN (converted by MNN's own converter, the RepGhost paper's deploy route) and in
OpenVINO (CPU plugin, float32; ``pip install openvino==2026.4.1``), interleaved with JAX on the
same threads, after checking each runtime's logits against JAX's.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Any, Callable, Optional

from ghostnets_jax.registry import create_model, list_models
from ghostnets_jax.complexity import model_info
from ghostnets_jax import timing

BEGIN, END = '<!-- zoo:begin -->', '<!-- zoo:end -->'
REPORT_FILES = ('zoo.md', 'zoo.json', 'zoo_accuracy_vs_macs.png', 'zoo_accuracy_vs_latency.png')


def _top1(i: dict) -> str:
  return f'{i["top1"]:.2f}'.rstrip('0').rstrip('.') if i['top1'] is not None else '-'


# Latency columns of the report: JAX (always) and the deploy runtimes (``--runtimes``).
LATENCY_KEYS = {'jax': 'latency_ms', **{rt: f'{rt}_ms' for rt in timing.RUNTIMES}}


def _and(words: list[str]) -> str:
  """'a', 'a and b', 'a, b and c'."""
  return ' and '.join([', '.join(words[:-1]), words[-1]] if len(words) > 2 else words)


def _latency(r: dict, key: str = 'latency_ms') -> str:
  return f'{r[key]:.1f}' if r.get(key) is not None else '-'


def markdown_table(names: list[str]) -> str:
  rows = ['| model | params (M) | MACs (G, deploy form) | input | top-1 (%) | paper |',
          '|---|---:|---:|---:|---:|---|']
  for n in names:
    i = {**model_info(n), 'macs': model_info(n, deploy=True)['macs']}
    paper = f'[{i["paper"]}]({i["paper_url"]})' if i['paper_url'] else i['paper']
    rows.append(f'| `{n}` | {i["params"] / 1e6:.2f} | {i["macs"] / 1e9:.3f} | {i["input_size"]} | '
                f'{_top1(i)} | {paper} |')
  return '\n'.join(rows)


def update_table(path: str, table: str) -> None:
  text = open(path).read()
  if BEGIN not in text or END not in text:
    raise SystemExit(f'{path} has no {BEGIN} ... {END} markers')
  text = re.sub(re.escape(BEGIN) + '.*?' + re.escape(END), lambda _: f'{BEGIN}\n{table}\n{END}',
                text, flags=re.S)
  open(path, 'w').write(text)


def check_all(names: list[str]) -> None:
  """Builds every model and runs one forward pass at 64x64 (a smoke test of the install)."""
  import jax
  import jax.numpy as jnp
  for n in names:
    t = time.time()
    model = create_model(n, num_classes=10)
    x = jnp.zeros((1, 64, 64, 3))
    v = model.init(jax.random.PRNGKey(0), x)
    out = model.apply(v, x)
    print(f'  {n:28s} ok  logits {tuple(out.shape)}  {time.time() - t:5.1f}s', flush=True)


# --- the report ---------------------------------------------------------------------------------

def collect(names: list[str], latencies: Optional[dict[str, dict[str, float]]] = None,
            measure: bool = True, min_time: float = 1.0, repeats: int = 5,
            progress: Optional[Callable[[list[dict[str, Any]]], None]] = None,
            runtimes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
  """One row per model: ``model_info`` plus the deploy form's CPU latency in JAX and in each of
  ``runtimes`` (from ``latencies`` — ``{name: {column: ms}}`` — else measured when ``measure``,
  else None); ``progress(rows)`` after each measured model."""
  latencies = latencies or {}
  keys = ['latency_ms'] + [LATENCY_KEYS[rt] for rt in runtimes]
  rows = []
  for n in names:
    info = model_info(n)
    deploy = model_info(n, deploy=True)
    row = {k: info[k] for k in ('name', 'family', 'input_size', 'params', 'macs', 'activations',
                                'top1', 'top1_source', 'paper', 'paper_url')}
    row['deploy_params'], row['macs'] = deploy['params'], deploy['macs']  # inference cost
    stored = latencies.get(n, {})
    row.update({k: stored.get(k) for k in LATENCY_KEYS.values()})
    rows.append(row)
    if measure and any(row[k] is None for k in keys):
      r = timing.latency(n, batch=1, deploy=True, min_time=min_time, repeats=repeats,
                            runtimes=runtimes)
      measured = {'latency_ms': r['seconds'] * 1e3,
                  **{LATENCY_KEYS[rt]: t * 1e3 for rt, t in r.get('runtimes', {}).items()}}
      row.update({k: v for k, v in measured.items() if row[k] is None})   # stored ones are kept
      print(f'  {n:24s} ' + '  '.join(f'{rt} {row[k]:8.1f} ms' for rt, k in LATENCY_KEYS.items()
                                      if k in keys) +
            f'  (compile {r["compile_s"]:.0f} s)', flush=True)
      if progress:
        progress(rows)
  return rows


def report_markdown(rows: list[dict[str, Any]], machine: str,
                    runtimes_machine: Optional[str] = None) -> str:
  runtimes = [rt for rt in timing.RUNTIMES
              if any(r.get(LATENCY_KEYS[rt]) is not None for r in rows)]
  rt_names = {'onnxruntime': 'ONNX Runtime', 'mnn': 'MNN', 'openvino': 'OpenVINO'}
  lines = [
      '# Model zoo', '',
      'Generated by `python -m ghostnets_jax.zoo --report` (do not edit by hand). Params, MACs and',
      'activations (conv/linear output elements, the latency proxy of the G-GhostNet paper) at each',
      "model's input size, counted by `ghostnets_jax.complexity`; params of the train form (deploy form:",
      'BN folded). Latency: the deploy form (`ghostnets_jax.reparameterize`), batch 1, float32, jitted',
      'and warm, median of interleaved rounds (`ghostnets_jax.timing.latency`), measured on:', '',
      f'> {machine}', '',
      *(['Deploy runtimes (`--runtimes`): the same deploy form exported to ONNX and run in '
         f'{_and([rt_names[rt] for rt in runtimes])} (CPU, batch 1, float32, as many threads '
         'as JAX), interleaved with JAX after their logits were checked against it'
         + (f', measured on:\n\n> {runtimes_machine}' if runtimes_machine else '.'), '']
        if runtimes else []),
      'Top-1: ImageNet-1k as published (source column); not re-measured here.', '',
      '![top-1 against MACs](zoo_accuracy_vs_macs.png)', '',
      '![top-1 against CPU latency](zoo_accuracy_vs_latency.png)', '',
      '| model | family | input | params (M) | deploy params (M) | MACs (G, deploy) | activations (M) | '
      'CPU latency (ms) | ' + ''.join(f'{rt_names[rt]} (ms) | ' for rt in runtimes) +
      'top-1 (%) | top-1 source |',
      '|---|---|---:|---:|---:|---:|---:|---:|' + '---:|' * len(runtimes) + '---:|---|']
  for r in rows:
    lines.append(f'| `{r["name"]}` | {r["family"]} | {r["input_size"]} | {r["params"] / 1e6:.2f} | '
                 f'{r["deploy_params"] / 1e6:.2f} | {r["macs"] / 1e9:.3f} | '
                 f'{r["activations"] / 1e6:.2f} | {_latency(r)} | '
                 + ''.join(f'{_latency(r, LATENCY_KEYS[rt])} | ' for rt in runtimes) +
                 f'{_top1(r)} | {r["top1_source"] or "-"} |')
  return '\n'.join(lines + host_comparison(rows)) + '\n'


def host_comparison(rows: list[dict[str, Any]]) -> list[str]:
  """Markdown lines putting each G-Ghost network (``g_ghost_<host>``) next to its plain host
  (``<host>``), as the G-GhostNet paper compares them; nothing when no pair is in ``rows``."""
  by_name = {r['name']: r for r in rows}
  pairs = [(r, by_name[r['name'][len('g_ghost_'):]]) for r in rows
           if r['name'].startswith('g_ghost_') and r['name'][len('g_ghost_'):] in by_name]
  if not pairs:
    return []
  lines = ['', '## G-Ghost networks next to their hosts', '',
           'Each cell: G-Ghost / host. Top-1 as published (sources in the table above).', '',
           '| G-Ghost model | host | params (M) | MACs (G, deploy) | activations (M) | '
           'CPU latency (ms) | top-1 (%) |', '|---|---|---:|---:|---:|---:|---:|']
  for g, h in pairs:
    lines.append(f'| `{g["name"]}` | `{h["name"]}` | {g["params"] / 1e6:.2f} / {h["params"] / 1e6:.2f}'
                 f' | {g["macs"] / 1e9:.3f} / {h["macs"] / 1e9:.3f} | {g["activations"] / 1e6:.2f}'
                 f' / {h["activations"] / 1e6:.2f} | {_latency(g)} / {_latency(h)} | {_top1(g)} / '
                 f'{_top1(h)} |')
  return lines


def plot(rows: list[dict[str, Any]], x_key: str, x_label: str, path: str, title: str) -> None:
  """Top-1 against ``x_key`` (log scale), one colour per family, every point labelled."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  points = [r for r in rows if r['top1'] is not None and r.get(x_key) is not None]
  families = sorted({r['family'] for r in points})
  colors = plt.get_cmap('tab10')
  fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
  for fi, fam in enumerate(families):
    fam_rows = sorted((r for r in points if r['family'] == fam), key=lambda r: r[x_key])
    xs = [r[x_key] for r in fam_rows]
    ax.plot(xs, [r['top1'] for r in fam_rows], 'o', color=colors(fi % 10), label=fam, ms=5)
    for r in fam_rows:
      ax.annotate(r['name'], (r[x_key], r['top1']), fontsize=7, xytext=(3, 3),
                  textcoords='offset points')
  ax.set_xscale('log')
  ax.set_xlabel(x_label)
  ax.set_ylabel('ImageNet top-1 (%, published)')
  ax.set_title(title)
  ax.grid(True, which='both', alpha=0.3)
  if points:
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def write_report(names: list[str], out_dir: str = 'docs', reuse_latency: bool = False,
                 measure: bool = True, min_time: float = 1.0, repeats: int = 5,
                 runtimes: tuple[str, ...] = ()) -> list[dict]:
  """Writes ``zoo.md``, ``zoo.json`` and the two plots into ``out_dir``. ``zoo.json`` is
  rewritten after every measured model, so an interrupted run resumes with ``reuse_latency``;
  stored rows of models outside ``names`` stay in it (``zoo.md`` and the plots show ``names``).
  """
  json_path = os.path.join(out_dir, 'zoo.json')
  latencies, machine, runtimes_machine, old_rows = {}, None, None, []
  if reuse_latency or not measure:
    if os.path.exists(json_path):
      with open(json_path) as f:
        old = json.load(f)
      latencies = {r['name']: {k: r[k] for k in LATENCY_KEYS.values() if r.get(k) is not None}
                   for r in old['rows']}
      machine, runtimes_machine = old['machine'], old.get('runtimes_machine')
      old_rows = old['rows']
    elif reuse_latency:
      raise SystemExit(f'--reuse-latency: {json_path} does not exist; run --report once without it')
  machine = machine or timing.describe(timing.machine())
  if runtimes and measure:
    runtimes_machine = timing.describe(timing.machine())
  os.makedirs(out_dir, exist_ok=True)

  def save(rows: list[dict]) -> None:
    # models of the stored report that this run does not cover (another --pattern, or not yet
    # reached) keep their stored rows
    done = {r['name'] for r in rows}
    merged = sorted(rows + [r for r in old_rows if r['name'] not in done], key=lambda r: r['name'])
    with open(json_path, 'w') as f:
      json.dump({'machine': machine, 'runtimes_machine': runtimes_machine, 'rows': merged}, f,
                indent=1)
  rows = collect(names, latencies, measure, min_time, repeats, progress=save, runtimes=runtimes)
  save(rows)
  with open(os.path.join(out_dir, 'zoo.md'), 'w') as f:
    f.write(report_markdown(rows, machine, runtimes_machine))
  for r in rows:
    r['gmacs'] = r['macs'] / 1e9
  plot(rows, 'gmacs', 'GMACs per image (log)', os.path.join(out_dir, REPORT_FILES[2]),
       'Top-1 against multiply-accumulates')
  plot(rows, 'latency_ms', 'CPU latency, batch 1, deploy form (ms, log)',
       os.path.join(out_dir, REPORT_FILES[3]), 'Top-1 against measured CPU latency')
  print(f'wrote {", ".join(os.path.join(out_dir, f) for f in REPORT_FILES)}')
  return rows


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--pattern', default='*')
  p.add_argument('--update-table', nargs='?', const='docs/models.md', default=None, metavar='FILE',
                 help='rewrite the model table between the zoo markers of FILE (docs/models.md)')
  p.add_argument('--check', action='store_true', help='build and run every model once')
  p.add_argument('--report', nargs='?', const='docs', default=None, metavar='DIR',
                 help='write the zoo report (zoo.md, zoo.json, plots) into DIR (default docs)')
  p.add_argument('--reuse-latency', action='store_true',
                 help='with --report: keep the latencies in DIR/zoo.json, measure only the others')
  p.add_argument('--no-latency', action='store_true',
                 help="with --report: measure nothing; latencies not in DIR/zoo.json are '-'")
  p.add_argument('--min-time', type=float, default=1.0, help='latency: seconds per timing round')
  p.add_argument('--repeats', type=int, default=5, help='latency: timing rounds (median)')
  p.add_argument('--runtimes', default='', help='with --report: also time the deploy form in '
                 f'these runtimes, comma-separated: {", ".join(timing.RUNTIMES)} (needs the export extra)')
  a = p.parse_args(argv)
  runtimes = tuple(r for r in a.runtimes.split(',') if r)
  unknown = set(runtimes) - set(timing.RUNTIMES)
  if unknown:
    p.error(f'--runtimes: unknown {sorted(unknown)}; choose from {", ".join(timing.RUNTIMES)}')
  names = list_models(a.pattern)
  if a.report:
    write_report(names, a.report, a.reuse_latency, not a.no_latency, a.min_time, a.repeats,
                 runtimes)
  table = markdown_table(names)
  if a.update_table:
    update_table(a.update_table, table)
    print(f'updated {a.update_table} ({len(names)} models)')
  elif not a.report:
    print(table)
  if a.check:
    check_all(names)


if __name__ == '__main__':
  main(sys.argv[1:])
