"""File-level export: model + checkpoint in, verified ONNX / MINDIR files out.

Each export checks the output location first, writes to a temporary file in the same
directory, verifies that file, and only then renames it onto the requested path: a failed
export leaves nothing behind and never replaces an existing file.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import numpy as np
import onnx

from ghostnets_jax.convert.checkpoint import load_checkpoint
from ghostnets_jax.convert.pytorch import _flatten
from ghostnets_jax.export.onnx import (ExportError, Verification, compare, export_onnx, jax_reference,
                                       sample_images, verify_onnx)
from ghostnets_jax.export.rewrites import op_types
from ghostnets_jax.initialize import init_variables
from ghostnets_jax.registry import create_model, get_spec


def check_output_path(path: str) -> None:
  """Raises :class:`ExportError` unless a file can be created at ``path``."""
  d = os.path.dirname(os.path.abspath(path))
  if os.path.isdir(path):
    raise ExportError(f'output path {path} is a directory; give a file name, e.g. {path}/model.onnx')
  if not os.path.isdir(d):
    what = 'is a file, not a directory' if os.path.exists(d) else 'does not exist'
    raise ExportError(f'cannot write {path}: directory {d} {what}. Create it or choose another --out.')
  try:
    fd, probe = tempfile.mkstemp(prefix='.ghostnets_jax_probe_', dir=d)
  except OSError as e:
    raise ExportError(f'cannot write to directory {d}: {e.strerror}. Choose another --out.') from e
  os.close(fd)
  os.remove(probe)


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
  """Yields a temporary path next to ``path``; renamed onto it on success, removed on failure."""
  check_output_path(path)
  base = os.path.basename(path)
  ext = os.path.splitext(base)[1]
  fd, tmp = tempfile.mkstemp(prefix=f'.{base}.', suffix=f'.tmp{ext}', dir=os.path.dirname(os.path.abspath(path)))
  os.close(fd)
  try:
    yield tmp
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # usual permissions (mkstemp and MindSpore make files private)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def num_classes_of(name: str, variables: Mapping[str, Any]) -> int:
  """The classifier size of ``variables``: the leaves whose shape depends on ``num_classes``."""
  def shapes(n):
    model = create_model(name, num_classes=n)
    x = jax.ShapeDtypeStruct((1, 64, 64, getattr(model, 'in_chans', 3)), jax.numpy.float32)
    return _flatten(jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x))
  one, two, have = shapes(1), shapes(2), _flatten(variables)
  for path, leaf in one.items():
    if leaf.shape != two[path].shape and path in have:
      return int(have[path].shape[-1])
  return 0


def load_model(name: str, checkpoint: Optional[str] = None, *, num_classes: Optional[int] = None,
               input_size: Optional[int] = None) -> tuple[nn.Module, dict]:
  """``(model, variables)``: from ``checkpoint`` (any format of ``load_checkpoint``), else random."""
  spec = get_spec(name)
  if checkpoint:
    variables = load_checkpoint(name, checkpoint, num_classes=num_classes)
    return create_model(name, num_classes=num_classes_of(name, variables)), variables
  model = create_model(name, num_classes=1000 if num_classes is None else num_classes)
  size = input_size or spec.input_size
  return model, init_variables(model, (1, size, size, getattr(model, 'in_chans', 3)))


@dataclasses.dataclass
class ExportReport:
  """What an export produced and how it was checked."""
  path: str
  model: str
  ops: dict[str, int]
  checks: list[str]
  files: list[str]

  def __str__(self) -> str:
    ops = ', '.join(f'{k} {v}' for k, v in self.ops.items())
    lines = [f'{self.model} -> {self.path}', f'  graph: {sum(self.ops.values())} nodes ({ops})']
    lines += [f'  verified: {c}' for c in self.checks]
    lines += [f'  wrote: {f} ({os.path.getsize(f) / 2**20:.1f} MiB)' for f in self.files]
    return '\n'.join(lines)


def _onnx_of(name: str, model: nn.Module, variables: Mapping[str, Any], size: int, *, layout: str,
             deploy: bool, slice_as_conv: bool, checkpoint: Optional[str]) -> onnx.ModelProto:
  spec = get_spec(name)
  meta = dict(model=name, num_classes=model.num_classes, input_size=size, mean=spec.mean,
              std=spec.std, crop_pct=spec.crop_pct, interpolation=spec.interpolation,
              weights=os.path.basename(checkpoint) if checkpoint else 'random initialisation')
  return export_onnx(model, variables, size, layout=layout, deploy=deploy,
                     slice_as_conv=slice_as_conv, metadata=meta)


def export_onnx_file(name: str, out: str, *, checkpoint: Optional[str] = None, deploy: bool = True,
                     layout: str = 'NCHW', num_classes: Optional[int] = None,
                     input_size: Optional[int] = None, slice_as_conv: bool = False,
                     batch_sizes: Sequence[int] = (1, 4), atol: float = 1e-4,
                     model_and_variables: Optional[tuple[nn.Module, dict]] = None,
                     reference: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> ExportReport:
  """Exports model ``name`` to ``out`` (ONNX), verified by ``onnx.checker`` and onnxruntime vs JAX.

  ``model_and_variables`` replaces loading (``checkpoint``/random init); ``reference`` (NHWC
  images -> logits) replaces the jitted JAX forward of the model.
  """
  get_spec(name)
  check_output_path(out)
  size = input_size or get_spec(name).input_size
  model, variables = model_and_variables or load_model(name, checkpoint, num_classes=num_classes,
                                                       input_size=size)
  proto = _onnx_of(name, model, variables, size, layout=layout, deploy=deploy,
                   slice_as_conv=slice_as_conv, checkpoint=checkpoint)
  with atomic_output(out) as tmp:
    onnx.save(proto, tmp)
    verification = verify_onnx(tmp, reference or jax_reference(model, variables),
                               (size, size, getattr(model, 'in_chans', 3)), layout=layout,
                               batch_sizes=batch_sizes, atol=atol)
  return ExportReport(out, name, op_types(proto), ['onnx.checker (full check)', f'onnxruntime: {verification}'],
                      [out])


def export_mindspore_file(name: str, out: str, *, checkpoint: Optional[str] = None,
                          deploy: bool = True, layout: str = 'NCHW', num_classes: Optional[int] = None,
                          input_size: Optional[int] = None, slice_as_conv: bool = False,
                          batch_size: int = 1, atol: float = 1e-4, ckpt: bool = True,
                          model_and_variables: Optional[tuple[nn.Module, dict]] = None,
                          reference: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                          onnx_model: Optional[onnx.ModelProto] = None) -> ExportReport:
  """Exports model ``name`` to ``out`` (MINDIR, batch ``batch_size``) and ``out``'s ``.ckpt``.

  The MindSpore network is built from the (deploy-form) ONNX graph
  (:func:`~ghostnets_jax.export.mindspore.onnx_to_mindspore`); it and the MINDIR loaded back
  (``mindspore.load`` + ``nn.GraphCell``) must both match JAX within ``atol``. ``onnx_model``
  reuses an export of the same model and variables (see :func:`export_onnx_file` for the rest).
  """
  from ghostnets_jax.export import mindspore as gms
  gms._mindspore()
  get_spec(name)
  check_output_path(out)
  ckpt_path = (out[:-len('.mindir')] if out.endswith('.mindir') else out) + '.ckpt'
  size = input_size or get_spec(name).input_size
  model, variables = model_and_variables or load_model(name, checkpoint, num_classes=num_classes,
                                                       input_size=size)
  proto = onnx_model or _onnx_of(name, model, variables, size, layout=layout, deploy=deploy,
                                 slice_as_conv=slice_as_conv, checkpoint=checkpoint)
  x = sample_images(batch_size, (size, size, getattr(model, 'in_chans', 3)))
  ref = (reference or jax_reference(model, variables))(x)

  def runner(cell) -> Callable:
    return lambda xb: gms.run_cell(cell, xb.transpose(0, 3, 1, 2) if layout == 'NCHW' else xb)

  net = gms.onnx_to_mindspore(proto, batch_size)
  scale = f'max |JAX| {float(abs(ref).max()):.3g}'
  checks = [f'MindSpore network (PyNative): max |MindSpore - JAX| '
            f'{compare("MindSpore network", runner(net), ref, x, atol):.2e} (< {atol:g}; {scale})']
  example = x.transpose(0, 3, 1, 2) if layout == 'NCHW' else x
  with atomic_output(out) as tmp, (atomic_output(ckpt_path) if ckpt else contextlib.nullcontext()) as tmp_ckpt:
    gms.export_mindir(net, example, tmp)
    loaded = gms.load_mindir(tmp)
    checks.append(f'MINDIR loaded back (mindspore.load + nn.GraphCell): max |MindSpore - JAX| '
                  f'{compare("loaded MINDIR", runner(loaded), ref, x, atol):.2e} (< {atol:g}; {scale})')
    if ckpt:
      gms.save_checkpoint(net, tmp_ckpt)
  return ExportReport(out, name, op_types(proto), checks, [out] + ([ckpt_path] if ckpt else []))


__all__ = ['ExportReport', 'Verification', 'atomic_output', 'check_output_path', 'export_mindspore_file',
           'export_onnx_file', 'load_model', 'num_classes_of']
