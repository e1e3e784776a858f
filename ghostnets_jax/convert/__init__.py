"""Weight conversion between Flax variables and PyTorch / MindSpore checkpoints."""
from ghostnets_jax.convert.checkpoint import (CheckpointFormat, load_checkpoint,
                                              register_checkpoint_format)
from ghostnets_jax.convert.orbax_run import (CorruptCheckpointError, RunError, load_run,
                                             restore_variables, run_info)
from ghostnets_jax.convert.mindspore import (from_mindspore, get_mindspore_rules,
                                             load_mindspore_checkpoint, mindspore_schemes,
                                             register_mindspore_rules, to_mindspore)
from ghostnets_jax.convert.pytorch import (CheckpointMismatchError, from_torch,
                                           load_torch_checkpoint, normalize_state_dict, to_torch)
from ghostnets_jax.convert.rules import TorchRules, get_torch_rules, register_torch_rules

__all__ = ['CheckpointFormat', 'CheckpointMismatchError', 'CorruptCheckpointError', 'RunError',
           'TorchRules', 'from_mindspore', 'from_torch', 'get_mindspore_rules', 'get_torch_rules',
           'load_checkpoint', 'load_mindspore_checkpoint', 'load_run', 'load_torch_checkpoint',
           'mindspore_schemes', 'normalize_state_dict', 'register_checkpoint_format',
           'register_mindspore_rules', 'register_torch_rules', 'restore_variables', 'run_info',
           'to_mindspore', 'to_torch']
