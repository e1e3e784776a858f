"""Flag parsing of ``main.py``: a ``--config.<field>=<value>`` override that names no field, or
whose value has the wrong type, stops with a message naming the field, its type, the config file's
value and the fix. (ml_collections alone raises a bare ``AttributeError: 'nope'`` or ``invalid
literal for int()``, and takes any tuple, e.g. ``('abc',)`` for a pair of floats.)
"""
from __future__ import annotations

import difflib
import re
from typing import Any, Optional, Sequence

from absl import flags
from ml_collections import config_dict
from ml_collections.config_flags import config_flags, config_path

from ghostnets_jax.errors import UserError

_TYPE_NAMES = {bool: 'a boolean', int: 'an integer', float: 'a number',
               str: 'a string', tuple: 'a tuple'}


class ConfigOverrideError(UserError, ValueError):
  """A ``--config.<field>=<value>`` override that cannot apply."""


def overrides(argv: Sequence[str], name: str = 'config') -> list[tuple[str, Optional[str]]]:
  """``[(field path, raw value)]`` of the ``--<name>.<path>[=value]`` arguments, in order."""
  out = []
  pattern = re.compile(rf'^--?(?:no)?{name}\.([\w.]+)(?:=(.*))?$', re.S)
  for i, arg in enumerate(argv):
    m = pattern.match(arg)
    if m:
      value = m.group(2)
      if value is None and i + 1 < len(argv) and not argv[i + 1].startswith('-'):
        value = argv[i + 1]
      out.append((m.group(1), value))
  return out


def _config_file(argv: Sequence[str], name: str) -> Optional[config_dict.ConfigDict]:
  """The config as the file defines it (before overrides), or None if it does not load."""
  for i, arg in enumerate(argv):
    m = re.match(rf'^--?{name}(?:=(.*))?$', arg)
    if m:
      path = m.group(1) if m.group(1) is not None else (argv[i + 1] if i + 1 < len(argv) else '')
      try:
        return config_flags.ConfigFileFlagParser(name=name).parse(path)
      except Exception:   # the file's own error is the one to show
        return None
  return None


def _unknown_field(cfg: config_dict.ConfigDict, path: str, raw: Optional[str],
                   name: str) -> Optional[str]:
  parts, node, found = path.split('.'), cfg, []
  for p in parts:
    if not isinstance(node, config_dict.ConfigDict) or p not in node:
      break
    node = node[p]
    found.append(p)
  else:
    return None
  parent = '.'.join(found)
  where = f'config.{parent}' if parent else 'the config'
  if not isinstance(node, config_dict.ConfigDict):
    return (f'--{name}.{path}: config.{parent} is {node!r}, a value with no fields; set it with '
            f'--{name}.{parent}=<value>.')
  missing, fields = parts[len(found)], sorted(node.keys())
  msg = f'--{name}.{path}: {where} has no field {missing!r}'
  close = difflib.get_close_matches(missing, fields, n=3)
  if close:
    msg += f' (did you mean {" or ".join(repr(c) for c in close)}?)'
  if parent.endswith('_kwargs'):   # keyword arguments: no fixed set of fields
    return (f'{msg}. {where} holds keyword arguments; only those the config file sets can be '
            f'overridden one by one ({fields or "none"}). Pass the whole dict instead, e.g. '
            f"--{name}.{parent}=\"{{'{missing}': {raw}}}\" (it replaces {node.to_dict()}).")
  return (f'{msg}; its fields: {", ".join(fields)}. Fix the name (every field is described in '
          'configs/default.py).')


def _type_name(cfg: config_dict.ConfigDict, path: str) -> str:
  try:
    t = config_path.get_type(path, cfg)
  except Exception:
    return 'of another type'
  return _TYPE_NAMES.get(t, f'of type {getattr(t, "__name__", t)}')


def _example(value: Any) -> str:
  return f'"{value}"' if isinstance(value, tuple) else str(value).lower() if isinstance(
      value, bool) else str(value)


def _bad_value(cfg: config_dict.ConfigDict, error: Exception, argv: Sequence[str],
               name: str) -> Optional[str]:
  m = re.search(rf'--{name}\.([\w.]+)', str(error))
  if not m:
    return None
  path = m.group(1)
  raw = dict(overrides(argv, name)).get(path)
  try:
    current = config_path.get_value(path, cfg)
  except Exception:
    return None
  if isinstance(current, config_dict.ConfigDict):
    return (f'--{name}.{path}={raw}: config.{path} is a group of fields ({", ".join(current)}); '
            f'set them one by one, e.g. --{name}.{path}.{next(iter(current), "<field>")}=...')
  kind = _type_name(cfg, path)
  hint = f', e.g. --{name}.{path}={_example(current)}' if current is not None else ''
  return (f'--{name}.{path}={raw}: config.{path} is {kind} (the config file has {current!r}) and '
          f'{raw!r} is not one. Give {kind}{hint}.')


def _kind(v: Any) -> Optional[str]:
  if isinstance(v, bool):
    return 'bool'
  return {int: 'int', float: 'float', str: 'str'}.get(type(v))


def check_tuple_types(cfg: config_dict.ConfigDict, parsed: config_dict.ConfigDict,
                      argv: Sequence[str], name: str = 'config') -> None:
  """Overridden tuples must hold what the config file's tuple holds (numbers, ints or strings)."""
  for path, raw in overrides(argv, name):
    try:
      default, value = config_path.get_value(path, cfg), config_path.get_value(path, parsed)
    except Exception:
      continue
    if not isinstance(default, tuple) or not default or not isinstance(value, tuple):
      continue
    kinds = {_kind(v) for v in default}
    allowed = {frozenset({'int'}): {'int'}, frozenset({'str'}): {'str'},
               frozenset({'float'}): {'int', 'float'},
               frozenset({'int', 'float'}): {'int', 'float'}}.get(frozenset(kinds))
    if allowed and not all(_kind(v) in allowed for v in value):
      what = {'int': 'integers', 'str': 'strings'}.get(next(iter(allowed)), 'numbers') if len(
          allowed) == 1 else 'numbers'
      raise ConfigOverrideError(
          f'--{name}.{path}={raw}: config.{path} is a tuple of {what} (the config file has '
          f'{default!r}), got {value!r}. Give {what}, e.g. --{name}.{path}="{default}".')


def parse_flags(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS,
                name: str = 'config') -> list[str]:
  """``flag_values(argv)``; raises :class:`ConfigOverrideError` for a bad config override."""
  try:
    rest = flag_values(list(argv))
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    cfg = _config_file(argv, name)
    msg = None
    if cfg is not None:
      msg = next((m for path, raw in overrides(argv, name)
                  if (m := _unknown_field(cfg, path, raw, name))), None)
      msg = msg or _bad_value(cfg, e, argv, name)
    if msg is None:
      raise
    raise ConfigOverrideError(msg) from e
  if overrides(argv, name):
    cfg = _config_file(argv, name)
    if cfg is not None:
      check_tuple_types(cfg, flag_values[name].value, argv, name)
  return rest
