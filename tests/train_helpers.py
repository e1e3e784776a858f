"""Shared fixtures for the training-system tests: a tiny GhostNet config, the prepared embedded
dataset (one copy per checkout, file-locked), fabricated ImageNet manual files."""
from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pathlib
import subprocess
import sys
import tarfile

import numpy as np

from tests.helpers import FAST_COMPILE  # noqa: F401  (re-exported for the training tests)

ROOT = pathlib.Path(__file__).resolve().parents[1]
TFDS_DIR = ROOT / '.cache' / 'tfds'
# A 3-stage GhostNet (ghostnet_050's blocks: Ghost modules, SE, depthwise, BN, dropout) that
# compiles in seconds; set through config.model_kwargs (module fields).
TINY_CFGS = (((3, 16, 16, 0, 1),), ((3, 48, 24, 0.25, 2),), ((5, 72, 40, 0, 2),))


@contextlib.contextmanager
def _locked(path: pathlib.Path):
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'w') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def embedded_data_dir() -> str:
  """TFDS data_dir holding the prepared ``fashion_mnist_embedded`` (built once, ~10 s)."""
  from ghostnets_jax.data.datasets import prepare
  with _locked(TFDS_DIR / '.lock'):
    prepare('fashion_mnist_embedded', str(TFDS_DIR))
  return str(TFDS_DIR)


# The short run shared by the resume, multi-process and eval-from-restore tests.
REFERENCE_RUN = {'num_train_steps': 4, 'checkpoint.every_steps': 2, 'ema.decay': 0.9}


def tiny_config(base=None, **overrides):
  """The g_ghost_regnet demo config (or the config ``base``) on the embedded data with the tiny
  GhostNet at 32 px."""
  from configs import default, g_ghost_regnet
  import ml_collections
  c = base if base is not None else g_ghost_regnet.get_config('demo')
  c.model = 'ghostnet_050'
  c.model_kwargs = ml_collections.ConfigDict({'cfgs': TINY_CFGS, 'head_chs': 64})
  c.data.data_dir = embedded_data_dir()
  c.data.threads = 2
  c.batch_size = 32
  c.eval.batch_size = 500
  c.compiler_options = FAST_COMPILE
  c.log_every_steps = 2
  c.checkpoint.async_save = True
  return default.override(c, overrides)


def flat(tree) -> dict[str, np.ndarray]:
  import jax
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]}


def max_rel_diff(a: dict, b: dict, floor: float = 1e-2) -> float:
  """max over leaves of max|a - b| / max(max|b|, floor).

  The floor keeps leaves that are zero up to float noise (the bias of a BN feeding another BN
  gets no gradient; BN running means of zero-mean activations stay ~1e-8) from dividing noise
  by noise: those are compared absolutely, at ``floor`` x the tolerance.
  """
  assert a.keys() == b.keys()
  out = 0.0
  for k in a:
    x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
    if x.size:
      out = max(out, float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), floor)))
  return out


def fabricate_imagenet(manual_dir: str, synsets=('n01440764', 'n01443537', 'n01484850'),
                       per_synset: int = 4, num_val: int = 6, seed: int = 0) -> None:
  """The two ImageNet tars TFDS's real ``imagenet2012`` builder reads: a train tar of
  per-synset tars of JPEGs and a val tar of ``ILSVRC2012_val_%08d.JPEG`` (labels by position
  from the file bundled with TFDS)."""
  from PIL import Image
  rng = np.random.RandomState(seed)
  os.makedirs(manual_dir, exist_ok=True)

  def jpeg():
    h, w = rng.randint(40, 90, size=2)
    b = io.BytesIO()
    Image.fromarray(rng.randint(0, 255, (h, w, 3), dtype=np.uint8)).save(b, format='JPEG')
    return b.getvalue()

  def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))

  with tarfile.open(os.path.join(manual_dir, 'ILSVRC2012_img_train.tar'), 'w') as t:
    for syn in synsets:
      b = io.BytesIO()
      with tarfile.open(fileobj=b, mode='w') as st:
        for i in range(per_synset):
          add(st, f'{syn}_{i}.JPEG', jpeg())
      add(t, f'{syn}.tar', b.getvalue())
  with tarfile.open(os.path.join(manual_dir, 'ILSVRC2012_img_val.tar'), 'w') as t:
    for i in range(1, num_val + 1):
      add(t, f'ILSVRC2012_val_{i:08d}.JPEG', jpeg())


def run_python(args: list[str], env: dict | None = None, **popen) -> subprocess.Popen:
  """Starts ``python args`` from the repo root with the test environment (+ ``env``)."""
  full = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
  return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=full, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, **popen)
