"""The model-zoo table from ``model_info`` (never typed by hand).

  python -m ghostnets_jax.zoo                 # print the table
  python -m ghostnets_jax.zoo --update-readme  # rewrite the table between the README markers
  python -m ghostnets_jax.zoo --check          # also build and run every model once on CPU
"""
from __future__ import annotations

import argparse
import re
import sys
import time

from ghostnets_jax.registry import create_model, list_models
from ghostnets_jax.stats import model_info

BEGIN, END = '<!-- zoo:begin -->', '<!-- zoo:end -->'


def markdown_table(names: list[str]) -> str:
  rows = ['| model | params (M) | MACs (G) | input | top-1 (%) | paper |',
          '|---|---:|---:|---:|---:|---|']
  for n in names:
    i = model_info(n)
    top1 = f'{i["top1"]:.2f}'.rstrip('0').rstrip('.') if i['top1'] is not None else '-'
    paper = f'[{i["paper"]}]({i["paper_url"]})' if i['paper_url'] else i['paper']
    rows.append(f'| `{n}` | {i["params"] / 1e6:.2f} | {i["macs"] / 1e9:.3f} | {i["input_size"]} | '
                f'{top1} | {paper} |')
  return '\n'.join(rows)


def update_readme(path: str, table: str) -> None:
  text = open(path).read()
  if BEGIN not in text or END not in text:
    raise SystemExit(f'{path} has no {BEGIN} ... {END} markers')
  text = re.sub(re.escape(BEGIN) + '.*?' + re.escape(END), f'{BEGIN}\n{table}\n{END}', text, flags=re.S)
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


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--pattern', default='*')
  p.add_argument('--update-readme', nargs='?', const='README.md', default=None)
  p.add_argument('--check', action='store_true', help='build and run every model once')
  a = p.parse_args(argv)
  names = list_models(a.pattern)
  table = markdown_table(names)
  if a.update_readme:
    update_readme(a.update_readme, table)
    print(f'updated {a.update_readme} ({len(names)} models)')
  else:
    print(table)
  if a.check:
    check_all(names)


if __name__ == '__main__':
  main(sys.argv[1:])
