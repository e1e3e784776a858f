"""Device mesh, shardings and multi-host setup (jit + NamedSharding; no pmap).

The mesh has a ``data`` axis and an ``fsdp`` axis (``config.sharding.mesh_shape``, ``-1`` = the
rest). The batch is split over both; parameters, optimizer state and EMA are split over
``fsdp`` along their largest dimension that divides (leaves below ``fsdp_min_size`` elements
stay replicated). With ``fsdp`` of size 1 this is plain data parallelism.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Optional, Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ghostnets_jax.errors import ConfigError

AXES = ('data', 'fsdp')


INITIALIZE = ('auto', 'always', 'never')


def detect_cluster() -> Optional[tuple[str, Optional[int]]]:
  """``(environment, expected process count or None)`` of the cluster JAX's own detection finds
  (Cloud TPU VM/pod via its metadata, GKE TPU, SLURM, Open MPI, Kubernetes), or None outside
  one (a laptop, a single GPU box)."""
  try:
    from jax._src.clusters import ClusterEnv   # JAX's detection (what initialize() uses)
  except ImportError:   # a JAX without it: only the explicit variables below
    return None
  for env in ClusterEnv._cluster_types:   # pylint: disable=protected-access
    if getattr(env, 'opt_in_only_method', False):
      continue
    try:
      if not env.is_env_present():
        continue
    except Exception:   # a half-configured environment: not this one
      continue
    try:
      count = int(env.get_process_count())
    except Exception:   # present, but the count needs the coordinator: assume several
      count = None
    return env.__name__, count
  return None


def initialize_distributed(config: ml_collections.ConfigDict) -> None:
  """``jax.distributed.initialize`` as ``config.distributed.initialize`` says.

  'auto': whenever more than one process is expected: a cluster JAX detects (Cloud TPU pod
  workers through the TPU metadata server, GKE, SLURM, Open MPI) with more than one process,
  ``JAX_COORDINATOR_ADDRESS`` in the environment, or ``distributed.coordinator_address`` set;
  otherwise one process (a laptop, a single TPU VM host or GPU box). 'always': initialize (with
  the coordinator/process fields of ``config.distributed``, auto-detected where unset).
  'never': one process.
  """
  d = config.distributed
  mode = d.initialize
  if mode not in INITIALIZE:
    raise ConfigError(f'config.distributed.initialize must be one of {INITIALIZE}, got {mode!r}.')
  if mode == 'never':
    return
  if mode == 'auto':
    cluster = detect_cluster()
    explicit = bool(d.coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS'))
    if not explicit and (cluster is None or cluster[1] == 1):
      return
    logging.info('distributed: %s', f'{cluster[0]} ({cluster[1] or "?"} processes)' if cluster
                 else 'coordinator address given')
  kwargs = {k: d[k] for k in ('coordinator_address', 'num_processes', 'process_id')
            if d.get(k) is not None}
  if d.get('local_device_ids'):
    kwargs['local_device_ids'] = list(d.local_device_ids)
  if jax.config.jax_platforms in (None, '', 'cpu') and d.cpu_collectives:
    jax.config.update('jax_cpu_collectives_implementation', d.cpu_collectives)
  jax.distributed.initialize(**kwargs)
  logging.info('distributed: process %d of %d, %d local / %d global devices', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def make_mesh(mesh_shape: Sequence[int] = (-1, 1), axis_names: Sequence[str] = AXES,
              devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A mesh over ``devices`` (all by default); one ``-1`` in ``mesh_shape`` takes the rest."""
  devices = list(devices) if devices is not None else jax.devices()
  shape = list(mesh_shape)
  if shape.count(-1) > 1:
    raise ConfigError(f'mesh_shape {tuple(mesh_shape)} has more than one -1')
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if len(devices) % known:
      raise ConfigError(f'mesh_shape {tuple(mesh_shape)} does not divide {len(devices)} devices')
    shape[shape.index(-1)] = len(devices) // known
  if math.prod(shape) != len(devices):
    raise ConfigError(f'mesh_shape {tuple(shape)} needs {math.prod(shape)} devices, there are '
                     f'{len(devices)}')
  return jax.make_mesh(tuple(shape), tuple(axis_names), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(shape))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over every mesh axis."""
  return NamedSharding(mesh, P(tuple(mesh.axis_names)))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def leaf_sharding(mesh: Mesh, shape: Sequence[int], min_size: int = 2 ** 14,
                  axis: str = 'fsdp') -> NamedSharding:
  """Shards the largest dimension divisible by the ``axis`` size; replicates small leaves."""
  n = mesh.shape.get(axis, 1)
  if n == 1 or math.prod(shape) < min_size:
    return replicated(mesh)
  for d in sorted(range(len(shape)), key=lambda i: -shape[i]):
    if shape[d] % n == 0:
      spec = [None] * len(shape)
      spec[d] = axis
      return NamedSharding(mesh, P(*spec))
  return replicated(mesh)


def tree_shardings(mesh: Mesh, abstract_tree: Any, min_size: int = 2 ** 14) -> Any:
  """Shardings for every leaf of ``abstract_tree`` (arrays or ShapeDtypeStructs)."""
  return jax.tree_util.tree_map(lambda x: leaf_sharding(mesh, x.shape, min_size), abstract_tree)


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Assembles process-local numpy batches into global arrays split by ``sharding``."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def describe_batch(batch: dict[str, jax.Array]) -> str:
  """How a global batch lies on the devices (for the log), e.g. ``image float32[32, 32, 32, 3]
  split P(('data', 'fsdp'),) over 8 devices, 4 rows on each``."""
  parts = []
  for k, v in sorted(batch.items()):
    rows = '/'.join(str(r) for r in sorted({s.data.shape[0] for s in v.addressable_shards}))
    parts.append(f'{k} {v.dtype}{list(v.shape)} split {v.sharding.spec} over '
                 f'{len(v.sharding.device_set)} devices, {rows} rows on each')
  return '; '.join(parts)


def check_batch_size(batch_size: int, num_devices: int, grad_accum_steps: int = 1,
                     process_count: int = 1) -> None:
  """Raises unless the global batch splits evenly over devices, accumulation steps and hosts."""
  unit = math.lcm(num_devices * grad_accum_steps, process_count)
  if batch_size > 0 and batch_size % unit == 0:
    return
  lo = batch_size // unit * unit
  fix = ' or '.join(f'--config.batch_size={v}' for v in (lo, lo + unit) if v > 0)
  raise ConfigError(f'batch_size={batch_size} is not divisible by devices x grad_accum_steps = '
                   f'{num_devices} x {grad_accum_steps} = {unit}: every device takes an equal '
                   f'share of the global batch. Use {fix} (or change optim.grad_accum_steps).')


def bn_num_groups(mesh: Mesh, bn_group_size: int) -> int:
  """Number of BatchNorm groups: 1 (statistics over the global batch) when ``bn_group_size`` is
  0, else devices / ``bn_group_size`` (each group = that many neighbouring devices)."""
  n = mesh.devices.size
  if not bn_group_size or bn_group_size >= n:
    return 1
  if n % bn_group_size:
    raise ConfigError(f'bn_group_size={bn_group_size} does not divide the {n} devices')
  return n // bn_group_size
