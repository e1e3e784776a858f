"""MNN inference of a converted file, with nothing but numpy and the ``MNN`` wheel.

This file imports nothing of ours, so it also runs as a script in a fresh child process
(``python mnn_runtime.py MODEL THREADS PRECISION IN.npy OUT.npy [IN.npy OUT.npy ...]``), which
is how :func:`ghostnets_jax.export.mnn.run_in_child` and the export checks use it.
"""
from __future__ import annotations

import sys
from typing import Callable

import numpy as np


def import_mnn():
  try:
    import MNN
  except ImportError as e:
    raise ImportError('the MNN export needs the MNN package: pip install MNN==3.6.1') from e
  return MNN


def load(path: str, threads: int = 1, precision: str = 'High') -> Callable[[np.ndarray], np.ndarray]:
  """An MNN module of ``path`` (CPU, ``threads`` threads) as a function of numpy images in the
  graph's own layout -> logits. ``precision``: MNN's ``PrecisionMode`` ('High': float32
  everywhere; 'Normal' lets ARM CPUs with fp16 arithmetic use it)."""
  MNN = import_mnn()
  F = MNN.expr
  module = MNN.nn.load_module_from_file(path, [], [], thread_num=threads,
                                        precision_mode=getattr(F.PrecisionMode, precision))

  def run(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, np.float32)
    out = module.forward([F.const(x, list(x.shape), F.NCHW)])
    out = out[0] if isinstance(out, (list, tuple)) else out
    return np.array(out.read(), np.float32).reshape(out.shape)
  return run


def main(argv: list[str]) -> None:
  model, threads, precision, files = argv[0], int(argv[1]), argv[2], argv[3:]
  run = load(model, threads, precision)
  for src, dst in zip(files[::2], files[1::2]):
    np.save(dst, run(np.load(src)))


if __name__ == '__main__':
  main(sys.argv[1:])
