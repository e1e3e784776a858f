"""Name-mapping rules between our Flax variable paths and PyTorch state-dict keys.

A flax leaf path such as ``params/blocks_1_0/ghost1/primary_conv/conv/kernel`` is first turned
into ``blocks_1_0.ghost1.primary_conv.conv.weight`` (collection dropped, ``/`` -> ``.``, leaf
renamed: kernel/scale -> weight, mean -> running_mean, var -> running_var), then each family's
regex rules rewrite it into the PyTorch key (``blocks.1.0.ghost1.primary_conv.0.weight``).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Mapping, Optional, Sequence, Union

Replacement = Union[str, Callable[[re.Match], str]]

LEAF_NAMES = {('params', 'kernel'): 'weight', ('params', 'scale'): 'weight',
              ('params', 'bias'): 'bias', ('batch_stats', 'mean'): 'running_mean',
              ('batch_stats', 'var'): 'running_var'}

# Rules most families share: ConvBN children named like timm's ConvBnAct.
CONV_BN_AS_SEQUENTIAL = [(r'\.conv\.(weight|bias)$', r'.0.\1'), (r'\.bn\.', '.1.')]


@dataclasses.dataclass(frozen=True)
class TorchRules:
  """How one family's PyTorch checkpoints are named.

  Attributes:
    rules: ``(pattern, replacement)`` regex substitutions applied in order to the dotted path.
    head_key: state-dict key of the classifier weight (used to infer ``num_classes``).
    ignore: patterns of checkpoint keys that carry no weights (e.g. ``num_batches_tracked``).
    filter: normalises a raw checkpoint dict (official names -> reference names) before mapping.
  """
  rules: Sequence[tuple[str, Replacement]]
  head_key: Optional[str] = 'classifier.weight'
  ignore: Sequence[str] = (r'num_batches_tracked$',)
  filter: Optional[Callable[[dict], dict]] = None
  deploy_rules: Optional[Sequence[tuple[str, Replacement]]] = None

  def key(self, path: Sequence[str], deploy: bool = False) -> str:
    collection, *mods, leaf = path
    name = '.'.join(mods + [LEAF_NAMES.get((collection, leaf), leaf)])
    rules = self.deploy_rules if deploy and self.deploy_rules is not None else self.rules
    for pattern, repl in rules:
      name = re.sub(pattern, repl, name)
    return name

  def ignored(self, key: str) -> bool:
    return any(re.search(p, key) for p in self.ignore)


_RULES: dict[str, TorchRules] = {}


def register_torch_rules(family: str, rules: TorchRules) -> TorchRules:
  _RULES[family] = rules
  return rules


def get_torch_rules(family: str) -> TorchRules:
  if family not in _RULES:
    raise ValueError(f'no PyTorch weight mapping is registered for family {family!r}')
  return _RULES[family]


def blocks_index(prefix: str, torch_prefix: str) -> tuple[str, str]:
  """Rule turning ``{prefix}_3_1`` into ``{torch_prefix}.3.1`` (flax names cannot hold dots)."""
  return (rf'(^|\.){prefix}((?:_\d+)+)(?=\.)',
          lambda m: m.group(1) + torch_prefix + m.group(2).replace('_', '.'))


def strip_prefix(state_dict: Mapping[str, object], prefixes: Sequence[str] = ('module.', 'model.')) -> dict:
  out = {}
  for k, v in state_dict.items():
    for p in prefixes:
      if k.startswith(p):
        k = k[len(p):]
        break
    out[k] = v
  return out
