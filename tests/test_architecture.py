"""The layering rules of docs/architecture.md, read from the source with ``ast``.

Every import of every module under ``ghostnets_jax/`` counts: module level and inside functions,
absolute and relative. A *part* is a top-level module or subpackage (``layers``, ``models``,
``registry``, ``convert``, ...); the package ``__init__`` assembles the parts and is exempt.

  layers/    imports only layers/
  models/    imports only layers/, registry and models/
  registry   imports nothing of ours
  no import cycle between parts
"""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
from typing import Iterator, Mapping, Optional

PKG = 'ghostnets_jax'
ROOT = pathlib.Path(__file__).resolve().parents[1] / PKG
ALLOWED = {'layers': {'layers'}, 'models': {'layers', 'registry', 'models'}, 'registry': set()}


def module_name(path: pathlib.Path) -> str:
  rel = path.relative_to(ROOT.parent).with_suffix('')
  parts = rel.parts[:-1] if rel.name == '__init__' else rel.parts
  return '.'.join(parts)


def is_module(name: str) -> bool:
  rel = pathlib.Path(*name.split('.')[1:])
  return (ROOT / rel).with_suffix('.py').is_file() or (ROOT / rel / '__init__.py').is_file()


def imports(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
  """``(line, imported module)`` of every import in ``source`` (anywhere in the tree), relative
  ones resolved against ``module``; ``from m import x`` yields ``m.x`` when that is a module."""
  package = module if is_package else module.rpartition('.')[0]
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = package.split('.')
        base = base[:len(base) - (node.level - 1)]
        target = '.'.join(base + ([node.module] if node.module else []))
      else:
        target = node.module
      for alias in node.names:
        sub = f'{target}.{alias.name}'
        yield node.lineno, sub if sub.startswith(PKG + '.') and is_module(sub) else target


def part(module: str) -> Optional[str]:
  """``ghostnets_jax.layers.conv`` -> ``layers``; None for the package root and other packages."""
  bits = module.split('.')
  return bits[1] if bits[0] == PKG and len(bits) > 1 else None


def edges() -> list[tuple[str, int, str, str, str]]:
  """``(file, line, importing part, imported part, imported module)`` for every import of ours."""
  out = []
  for path in sorted(ROOT.rglob('*.py')):
    mod = module_name(path)
    src = part(mod)
    if src is None:   # the package __init__: the assembler
      continue
    for line, target in imports(path.read_text(), mod, path.name == '__init__.py'):
      dst = part(target)
      if dst is not None:
        out.append((str(path.relative_to(ROOT.parent)), line, src, dst, target))
  return out


def find_cycle(graph: Mapping[str, set[str]]) -> Optional[list[str]]:
  """One cycle of ``graph`` (``[a, b, ..., a]``), or None."""
  state: dict[str, int] = {}   # 1: on the stack, 2: done
  stack: list[str] = []

  def visit(node: str) -> Optional[list[str]]:
    state[node] = 1
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 1:
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    stack.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_walker_sees_function_level_and_relative_imports():
  src = ('import os\n'
         'from . import conv\n'
         'def f():\n'
         '  from ..registry import get_spec\n'
         '  import ghostnets_jax.data.augment\n')
  got = list(imports(src, 'ghostnets_jax.layers.norm', is_package=False))
  assert got == [(1, 'os'), (2, 'ghostnets_jax.layers.conv'), (4, 'ghostnets_jax.registry'),
                 (5, 'ghostnets_jax.data.augment')]
  # A real one: timing.py imports the registry only inside its functions.
  assert ('timing', 'registry') in {(s, d) for _, _, s, d, _ in edges()}


def test_find_cycle():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert find_cycle({'a': {'a'}}) == ['a', 'a']


def test_layer_rules():
  bad = sorted({f'{f}:{line} ({src}) imports {target}' for f, line, src, dst, target in edges()
                if src in ALLOWED and dst not in ALLOWED[src]})
  assert not bad, ('imports that break the layering of docs/architecture.md '
                   f'({ALLOWED}):\n' + '\n'.join(bad))


def test_no_import_cycle_between_parts():
  graph: dict[str, set[str]] = {}
  where: dict[tuple[str, str], str] = {}
  for f, line, src, dst, _ in edges():
    if src != dst:
      graph.setdefault(src, set()).add(dst)
      where.setdefault((src, dst), f'{f}:{line}')
  cycle = find_cycle(graph)
  assert cycle is None, 'import cycle between parts: ' + ' -> '.join(cycle) + '\n' + '\n'.join(
      f'  {a} -> {b}: {where[(a, b)]}' for a, b in zip(cycle, cycle[1:]))


def test_importing_convert_loads_no_converter_dependency():
  """``ghostnets_jax.convert`` loads its converters on first use (module ``__getattr__``)."""
  code = ('import sys, ghostnets_jax.convert as c\n'
          'heavy = ("orbax.checkpoint", "torch", "mindspore", "ghostnets_jax.convert.pytorch")\n'
          'print(sorted(m for m in heavy if m in sys.modules))\n'
          'c.from_torch\n'
          'print("ghostnets_jax.convert.pytorch" in sys.modules)\n')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.split('\n')[:2] == ['[]', 'True'], out.stdout + out.stderr
