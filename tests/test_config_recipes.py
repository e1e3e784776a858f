"""Every literal configs/README.md quotes from a public source ("Literals pinned by a test")
holds in the config object it names: the table is parsed here and each row checked, so a config
(or the README) that drifts from its source fails."""
import ast
import importlib
import pathlib
import re

import pytest

import ghostnets_jax as gj

README = pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'README.md'


def pinned_rows():
  text = README.read_text()
  section = text[text.index('## Literals pinned by a test'):]
  rows = []
  for line in section.splitlines():
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if len(cells) == 5 and cells[2].startswith('`'):
      rows.append(cells)
  return rows


def evaluate(expr):
  """A literal or simple arithmetic (``128 * 8``), nothing else."""
  tree = ast.parse(expr, mode='eval')
  allowed = (ast.Expression, ast.Constant, ast.Tuple, ast.BinOp, ast.Mult, ast.UnaryOp, ast.USub,
             ast.Load)
  assert all(isinstance(n, allowed) for n in ast.walk(tree)), expr
  return eval(compile(tree, '<readme>', 'eval'), {'__builtins__': {}})


def field(config, name):
  if name == 'input size':
    return config.image_size or gj.get_spec(config.model).input_size
  value = config
  for part in name.split('.'):
    value = value[part]
  return tuple(value) if isinstance(value, (list, tuple)) else value


ROWS = pinned_rows()


def test_the_table_is_there_and_covers_every_recipe_source():
  assert len(ROWS) >= 40
  configs = {re.sub(r'[`:].*', '', c[2].strip('`')) for c in ROWS}
  assert configs == {'ghostnet_d', 'repghost', 's_ghostnet', 'multigrain'}


@pytest.mark.parametrize('source,printed,config,names,value', ROWS,
                         ids=[f'{r[2]}-{r[3]}' for r in ROWS])
def test_pinned_literal(source, printed, config, names, value):
  module, _, variant = config.strip('`').partition(':')
  c = importlib.import_module(f'configs.{module}').get_config(variant or None)
  names = [n.strip().strip('`') for n in names.split(',')]
  want = evaluate(value.strip('`'))
  got = tuple(field(c, n) for n in names) if len(names) > 1 else field(c, names[0])
  assert got == pytest.approx(want) if not isinstance(want, tuple) or all(
      isinstance(w, (int, float)) for w in want) else got == want, (source, printed)


def test_every_model_the_readme_names_exists():
  """Single names in the models row are registered models (``a_050/100`` shorthand aside)."""
  text = README.read_text()
  models_row = next(line for line in text.splitlines() if line.startswith('| **models**'))
  names = re.findall(r'`([a-z0-9_]+)`', models_row)
  assert len(names) >= 4
  for name in names:
    assert name in gj.list_models(), name
