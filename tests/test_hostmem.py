"""ghostnets_jax.hostmem: page faults counted by the kernel (getrusage) in fresh processes."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from ghostnets_jax import hostmem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(hostmem._libc() is None, reason='glibc malloc only (Linux)')


def _child(code: str, env: dict | None = None) -> str:
  proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, env={**os.environ, 'PYTHONPATH': ROOT, **(env or {})})
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout.strip().splitlines()[-1]


# A worker thread allocates a 96 MiB block, writes every page and frees it, twice; the second
# round's minor page faults are what every later call pays.
BLOCK = """
import ctypes, resource, sys, threading
from ghostnets_jax import hostmem
retained = hostmem.retain_freed_memory() if sys.argv[-1] == 'retain' else False
libc = ctypes.CDLL('libc.so.6')
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size, faults = 96 * 2**20, []
def work():
  for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(p)
    faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
t = threading.Thread(target=work)
t.start(); t.join()
print(retained, faults[1])
"""


def test_a_freed_block_is_reused_without_new_page_faults():
  pages = 96 * 2**20 // os.sysconf('SC_PAGESIZE')
  default = _child(BLOCK.replace("sys.argv[-1]", "'default'")).split()
  retained = _child(BLOCK.replace("sys.argv[-1]", "'retain'")).split()
  assert default[0] == 'False' and retained[0] == 'True'
  # glibc's default: a fresh mapping each time, so at least one fault per page (per 2 MiB page
  # where transparent huge pages are always on)
  assert int(default[1]) >= pages // 512
  assert int(retained[1]) <= max(int(default[1]) // 10, 8)


# XLA:CPU's temporaries of one call (here ~290 MiB: a cumulative sum and its reversed product).
# Per call: with glibc's default every call maps its temporaries afresh; retained, the heap first
# grows to fit the order in which the calls allocate (which varies with thread timing: the process
# can grow for several calls, now and then again later), and calls after that fault nothing.
JAX_CALLS = """
import resource, sys
from ghostnets_jax import hostmem
retained = hostmem.configure(sys.argv[-1])
import jax, jax.numpy as jnp
f = jax.jit(lambda x: (jnp.cumsum(x * 2.0) * jnp.cumsum(x * 2.0)[::-1]).sum())
x = jnp.ones((24 * 2**20,), jnp.float32)
compiled = f.lower(x).compile()
temp = compiled.memory_analysis().temp_size_in_bytes
for _ in range(2):
  compiled(x).block_until_ready()
faults = []
for _ in range(12):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  compiled(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(retained, temp, min(faults))
"""


def test_xla_cpu_temporaries_stop_faulting_once_retained():
  default = _child(JAX_CALLS.replace("sys.argv[-1]", "'default'"), {'JAX_PLATFORMS': 'cpu'}).split()
  retained = _child(JAX_CALLS.replace("sys.argv[-1]", "'retain'"), {'JAX_PLATFORMS': 'cpu'}).split()
  assert default[0] == 'False' and retained[0] == 'True'
  temp_pages = int(default[1]) / os.sysconf('SC_PAGESIZE')
  assert int(default[1]) > 64 * 2**20                        # over a thread arena's 64 MiB
  assert float(default[2]) >= temp_pages / 512               # fresh pages on every call
  assert float(retained[2]) <= float(default[2]) / 10        # retained: calls that reuse them all


def test_default_changes_nothing_and_bad_names_are_named():
  assert hostmem.configure('default') is False
  from ghostnets_jax.errors import ConfigError
  with pytest.raises(ConfigError, match=r"config.host_memory='keep' is not one of \('default', 'retain'\)"):
    hostmem.configure('keep')


def test_host_memory_benchmark_names_a_bad_mode(capsys):
  from benchmarks import host_memory
  with pytest.raises(SystemExit):
    host_memory.parse_args(['--modes', 'default,huge'])
  assert "--modes: unknown ['huge']" in capsys.readouterr().err
  assert host_memory.parse_args([]).modes.split(',') == ['default', 'retain', 'hugetlb']


def test_host_memory_benchmark_reports_the_resident_memory_of_its_process(tmp_path):
  out = tmp_path / 'host_memory.json'
  proc = subprocess.run([sys.executable, 'benchmarks/host_memory.py', '--models', 'ghostnet_050',
                         '--modes', 'default', '--steps', '1', '--rounds', '1', '--batch', '2',
                         '--size', '64', '--json', str(out)], cwd=ROOT, capture_output=True,
                        text=True, timeout=600, env={**os.environ, 'PYTHONPATH': ROOT})
  assert proc.returncode == 0, proc.stderr[-3000:]
  row, = json.loads(out.read_text())['rows']
  # the kernel's two counters of one process: resident memory at the end (statm) is at most its
  # peak (getrusage's ru_maxrss), and the peak held at least XLA's temporaries of the step
  assert 0 < row['rss_end_mb'] <= row['max_rss_mb'] * 1.001
  assert row['max_rss_mb'] >= row['temp_mb'] > 0
  assert '| resident MiB at the end | peak resident MiB |' in proc.stdout


def test_train_step_benchmark_gives_each_model_a_fresh_process_with_the_host_memory_setting(tmp_path):
  # --process-per-model: every model on a heap of its own, under the --host-memory it was given
  out = tmp_path / 'train_step.json'
  proc = subprocess.run([sys.executable, 'benchmarks/train_step.py', '--models',
                         'ghostnet_050,repghostnet_050', '--torch-models', '', '--batch', '2',
                         '--size', '64', '--repeats', '1', '--min-time', '0', '--host-memory',
                         'retain', '--process-per-model', '--json', str(out)], cwd=ROOT,
                        capture_output=True, text=True, timeout=600,
                        env={**os.environ, 'PYTHONPATH': ROOT})
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  assert [r['model'] for r in result['rows']] == ['ghostnet_050', 'repghostnet_050']
  assert len({m['pid'] for m in result['machines']}) == 2
  assert [m['host_memory'] for m in result['machines']] == ['retained', 'retained']
  assert all(r['jax_img_s'] > 0 for r in result['rows'])
