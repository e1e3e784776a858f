"""Wall-clock timing shared by ``benchmarks/`` and the model-zoo report.

Candidates are timed in one process, in interleaved rounds (A B A B ...), and each reports its
median over rounds, so a load spike from other processes hits every candidate alike. JAX
functions are compiled once (``jit(...).lower(...).compile()``, the compile timed apart) and
warmed up before timing; every call is waited for (``block_until_ready``).
"""
from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ghostnets_jax import hostmem

_HOST = {'memory': 'default'}   # what prepare_process applied, for machine()


def cpu_threads() -> int:
  """CPUs this process may run on: the size of XLA's CPU thread pool (and what PyTorch gets)."""
  return len(os.sched_getaffinity(0))


def limit_cpus(n: int) -> None:
  """Pins this process to its first ``n`` CPUs; call before JAX starts its CPU client."""
  cpus = sorted(os.sched_getaffinity(0))
  if not 1 <= n <= len(cpus):
    raise ValueError(f'--threads must be between 1 and {len(cpus)} here, got {n}')
  os.sched_setaffinity(0, cpus[:n])


def add_host_memory_arg(parser: Any) -> None:
  """``--host-memory`` (see :func:`prepare_process`)."""
  parser.add_argument('--host-memory', choices=hostmem.HOST_MEMORY, default='default',
                      help="'retain': glibc's malloc keeps freed blocks for reuse, as main.py does "
                      "with --config.host_memory=retain (ghostnets_jax.hostmem); it applies to "
                      "everything in this process, PyTorch included. 'default' (the default): "
                      "glibc as it is")


def prepare_process(threads: Optional[int] = None, host_memory: str = 'default') -> None:
  """Pins the process to ``threads`` CPUs (all when None) and applies ``host_memory``
  (:func:`ghostnets_jax.hostmem.configure`); call before JAX's first computation."""
  if threads:
    limit_cpus(threads)
  _HOST['memory'] = 'retained' if hostmem.configure(host_memory) else 'default'


def add_timing_args(parser: Any) -> None:
  """``--threads``, ``--min-time``, ``--repeats`` and ``--host-memory`` (see
  :func:`prepare_process`, :func:`time_calls`)."""
  parser.add_argument('--threads', type=int, default=None,
                      help='CPUs for every candidate (default: all this process may use)')
  parser.add_argument('--min-time', type=float, default=1.0, help='seconds per candidate per round')
  parser.add_argument('--repeats', type=int, default=5, help='interleaved rounds (median reported)')
  add_host_memory_arg(parser)


def model_names(models: str) -> list[str]:
  """Registry names from a comma-separated list of names and shell patterns (``ghostnet*``)."""
  from ghostnets_jax.registry import get_spec, list_models
  names: list[str] = []
  for m in models.split(','):
    found = list_models(m) if any(c in m for c in '*?[') else [get_spec(m).name]
    if not found:
      raise ValueError(f'no registered model matches {m!r}')
    names += [n for n in found if n not in names]
  return names


def write_json(path: str, info: Mapping[str, Any], args: Mapping[str, Any], rows: list[dict],
               **extra: Any) -> None:
  """Writes ``{'machine', 'args', 'rows', **extra}`` to ``path`` (nothing when ``path`` is empty)."""
  if not path:
    return
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'w') as f:
    json.dump({'machine': dict(info), 'args': dict(args), 'rows': rows, **extra}, f, indent=1)
  print(f'wrote {path}')


def _cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
  """What the numbers were measured on: CPU, threads, load, library versions, XLA flags."""
  info = {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'cpu': _cpu_model(),
          'cpus_online': os.cpu_count(), 'threads': cpu_threads(),
          'load_avg_1_5_15': [round(x, 2) for x in os.getloadavg()],
          'jax': jax.__version__, 'backend': jax.default_backend(),
          'device': jax.devices()[0].device_kind, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
          'host_memory': _HOST['memory'], 'pid': os.getpid()}
  if 'torch' in sys.modules:  # only when the caller uses it
    torch = sys.modules['torch']
    info['torch'] = torch.__version__
    info['torch_threads'] = torch.get_num_threads()
  return info


# Dense peak throughput (TFLOP/s) per accelerator, from NVIDIA's data sheets. float32 is the TF32
# tensor-core rate: cuDNN (PyTorch's default ``torch.backends.cudnn.allow_tf32``) and XLA run
# float32 convolutions on TF32 by default on these cards. Matched against ``device_kind`` in order.
PEAK_TFLOPS = (('H100 PCIe', {'bfloat16': 756.0, 'float32': 378.0}),
               ('H100', {'bfloat16': 989.4, 'float32': 494.7}),
               ('H200', {'bfloat16': 989.4, 'float32': 494.7}),
               ('A100', {'bfloat16': 312.0, 'float32': 156.0}))


def peak_tflops(dtype: str, device_kind: Optional[str] = None) -> Optional[float]:
  """The dense peak for ``dtype`` of ``device_kind`` (default: JAX's first device when it is a
  GPU), from ``PEAK_TFLOPS``; None for a CPU or a device not listed."""
  if device_kind is None:
    if jax.default_backend() != 'gpu':
      return None
    device_kind = jax.devices()[0].device_kind
  for key, peaks in PEAK_TFLOPS:
    if key in device_kind:
      return peaks.get(dtype)
  return None


def model_macs(name: str, size: int, deploy: bool = False) -> float:
  """MACs per image of a registered model at ``size`` (its count at the default input size,
  scaled by the area)."""
  from ghostnets_jax.complexity import model_info
  from ghostnets_jax.registry import get_spec
  return model_info(name, deploy=deploy)['macs'] * (size / get_spec(name).input_size) ** 2


def mfu(macs_per_image: float, images_per_s: float, peak: Optional[float], train: bool) -> Optional[float]:
  """Model FLOPs utilisation: 2 FLOPs per MAC forward, 3x the forward for a training step
  (forward + gradients of inputs and weights), over the card's peak."""
  if not peak:
    return None
  return 2 * macs_per_image * (3 if train else 1) * images_per_s / (peak * 1e12)


def describe(info: Mapping[str, Any]) -> str:
  load = ', '.join(f'{x:.2f}' for x in info['load_avg_1_5_15'])
  torch_part = f', torch {info["torch"]} ({info["torch_threads"]} threads)' if 'torch' in info else ''
  flags = f', XLA_FLAGS={info["xla_flags"]!r}' if info['xla_flags'] else ''
  return (f'{info["date"]}: {info["cpu"]}, {info["threads"]} of {info["cpus_online"]} CPUs, '
          f'load average {load}; jax {info["jax"]} on {info["backend"]} ({info["device"]})'
          f'{torch_part}{flags}, host memory {info.get("host_memory", "default")}')


def torch_placement() -> tuple[str, Any]:
  """(device, memory format) for the PyTorch side of a benchmark: CUDA and channels-last (cuDNN's
  fast NHWC layout) when JAX runs on a GPU and PyTorch sees one, else the CPU and NCHW."""
  import torch
  if jax.default_backend() == 'gpu' and torch.cuda.is_available():
    return 'cuda', torch.channels_last
  return 'cpu', torch.contiguous_format


def row_line(row: Mapping[str, Any], digits: int = 3) -> str:
  """One result row as ``  key=value, ...`` (floats to ``digits`` significant digits)."""
  return '  ' + ', '.join(f'{k}={v:.{digits}g}' if isinstance(v, float) else f'{k}={v}'
                          for k, v in row.items())


def compile_jit(fn: Callable[..., Any], *args: Any, **jit_kwargs: Any) -> tuple[Callable[..., Any], float]:
  """``jax.jit(fn)`` compiled for ``args``; returns (compiled, seconds spent compiling)."""
  t = time.perf_counter()
  compiled = jax.jit(fn, **jit_kwargs).lower(*args).compile()
  return compiled, time.perf_counter() - t


def blocking(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
  """A no-argument call of ``fn(*args)`` that waits for the result (JAX dispatches async)."""
  return lambda: jax.block_until_ready(fn(*args))


def time_calls(calls: Mapping[str, Callable[[], Any]], min_time: float = 1.0, repeats: int = 5,
               warmup: int = 1) -> dict[str, float]:
  """Median seconds per call of each candidate, timed in ``repeats`` interleaved rounds.

  Each round runs a candidate enough times to last about ``min_time`` seconds (at least once).
  """
  iters = {}
  for name, call in calls.items():
    for _ in range(warmup):
      call()
    t = time.perf_counter()
    call()
    iters[name] = max(1, int(min_time / max(time.perf_counter() - t, 1e-6)))
  per_call: dict[str, list[float]] = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      t = time.perf_counter()
      for _ in range(iters[name]):
        call()
      per_call[name].append((time.perf_counter() - t) / iters[name])
  return {name: statistics.median(ts) for name, ts in per_call.items()}


def eval_forms(model: Any, variables: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
  """``{'train': (model, variables), 'deploy': reparameterize(model, variables)}``."""
  from ghostnets_jax.reparam import reparameterize
  return {'train': (model, variables), 'deploy': reparameterize(model, variables)}


def images(batch: int, size: int, seed: int = 0) -> np.ndarray:
  """A float32 NHWC batch of standard-normal pixels (normalised images have about that range)."""
  return np.random.RandomState(seed).randn(batch, size, size, 3).astype(np.float32)


@functools.lru_cache(maxsize=None)
def init_variables_for(name: str, size: int) -> Any:
  """Random variables of registry model ``name`` (1000 classes), cached per process.

  Drawn in numpy for the shapes of ``init`` (``jax.eval_shape``: nothing compiled): kernels
  normal with 1/fan-in variance, BN statistics at their initial values, other leaves small.
  Speed does not depend on the values; this saves compiling ``init`` for every model.
  """
  from ghostnets_jax.initialize import random_variables
  from ghostnets_jax.registry import create_model
  return random_variables(create_model(name), size, other_std=0.01, unit_keys=('var', 'scale'))


RUNTIMES = ('onnxruntime', 'mnn', 'openvino')


def check_runtimes(runtimes: Sequence[str]) -> None:
  """ValueError naming the choices unless every name is in :data:`RUNTIMES`."""
  unknown = set(runtimes) - set(RUNTIMES)
  if unknown:
    raise ValueError(f'unknown runtime(s) {sorted(unknown)}; choose from {", ".join(RUNTIMES)}')


def runtime_runners(proto: Any, runtimes: Sequence[str], threads: int
                    ) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
  """``{runtime: run}`` for the ONNX model ``proto`` (an ``onnx.ModelProto``), each on ``threads``
  threads: ``run`` maps images in the graph's layout to logits.

  onnxruntime: CPU provider, ``threads`` intra-op threads, one inter-op thread, default
  (full) graph optimisations. MNN: converted by MNN's converter
  (:mod:`ghostnets_jax.export.mnn`), float32. OpenVINO: CPU plugin, float32
  (``INFERENCE_PRECISION_HINT``, :mod:`ghostnets_jax.export.openvino`; an optional install).
  """
  import tempfile

  import onnx
  check_runtimes(runtimes)
  runners = {}
  if 'onnxruntime' in runtimes:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(proto.SerializeToString(), opts, providers=['CPUExecutionProvider'])
    feed = session.get_inputs()[0].name
    runners['onnxruntime'] = lambda x: session.run(None, {feed: x})[0]
  if 'mnn' in runtimes:
    from ghostnets_jax.export import mnn
    with tempfile.TemporaryDirectory() as d:
      onnx.save(proto, os.path.join(d, 'm.onnx'))
      mnn.convert(os.path.join(d, 'm.onnx'), os.path.join(d, 'm.mnn'))
      runners['mnn'] = mnn.load(os.path.join(d, 'm.mnn'), threads=threads)
  if 'openvino' in runtimes:
    from ghostnets_jax.export import openvino
    runners['openvino'] = openvino.load(proto, threads=threads, precision='f32')
  return runners


def runtime_calls(model: Any, variables: Any, x_nchw: np.ndarray, runtimes: list[str], threads: int
                  ) -> dict[str, Callable[[], Any]]:
  """``{runtime: call}`` for onnxruntime / MNN / OpenVINO on the ONNX export of ``model`` (NCHW,
  dynamic batch; see :func:`runtime_runners`) applied to ``x_nchw``, each on ``threads`` threads."""
  from ghostnets_jax.export import export_onnx
  check_runtimes(runtimes)
  proto = export_onnx(model, variables, x_nchw.shape[-1])
  return {rt: functools.partial(run, x_nchw)
          for rt, run in runtime_runners(proto, runtimes, threads).items()}


def latency(name: str, batch: int = 1, size: Optional[int] = None, deploy: bool = True,
            min_time: float = 1.0, repeats: int = 5, runtimes: tuple[str, ...] = ()
            ) -> dict[str, Any]:
  """Eval-mode forward time of registry model ``name`` (JAX, float32, this process's CPUs).

  Returns ``{'seconds': median per batch, 'compile_s': ...}``; random (initial) weights. With
  ``runtimes`` (:data:`RUNTIMES`), the same form's ONNX export is timed in those runtimes too,
  interleaved with JAX, on as many threads: ``{'runtimes': {runtime: seconds}}``.
  A runtime whose logits differ from JAX's (beyond 1e-3 of the largest logit) raises
  ``ValueError``: a time for a wrong graph means nothing.
  """
  from ghostnets_jax.registry import create_model, get_spec
  size = size or get_spec(name).input_size
  model, variables = create_model(name), init_variables_for(name, size)
  if deploy:
    model, variables = eval_forms(model, variables)['deploy']
  x_np = images(batch, size)
  x = jnp.asarray(x_np)
  fn, compile_s = compile_jit(functools.partial(model.apply, train=False), variables, x)
  calls = {name: blocking(fn, variables, x)}
  if runtimes:
    want = np.asarray(calls[name](), np.float32)
    x_nchw = np.ascontiguousarray(x_np.transpose(0, 3, 1, 2))
    for rt, call in runtime_calls(model, variables, x_nchw, list(runtimes), cpu_threads()).items():
      err = float(np.abs(np.asarray(call(), np.float32) - want).max())
      if not err <= 1e-3 * float(np.abs(want).max()):
        raise ValueError(f'{name}: {rt} logits differ from JAX by {err:.3g} (largest logit '
                         f'{float(np.abs(want).max()):.3g}); not timing it')
      calls[rt] = call
  seconds = time_calls(calls, min_time, repeats)
  out: dict[str, Any] = {'seconds': seconds[name], 'compile_s': compile_s}
  if runtimes:
    out['runtimes'] = {rt: seconds[rt] for rt in runtimes}
  return out
