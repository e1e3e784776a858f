"""Weight conversion between Flax variables and PyTorch / MindSpore checkpoints."""
from ghostnets_jax.convert.pytorch import (CheckpointMismatchError, from_torch,
                                           load_torch_checkpoint, normalize_state_dict, to_torch)
from ghostnets_jax.convert.rules import TorchRules, get_torch_rules, register_torch_rules

__all__ = ['CheckpointMismatchError', 'TorchRules', 'from_torch', 'get_torch_rules',
           'load_torch_checkpoint', 'normalize_state_dict', 'register_torch_rules', 'to_torch']
