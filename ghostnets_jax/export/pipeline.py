"""File-level export: model + checkpoint in, verified ONNX / MINDIR files out.

The weights come from a checkpoint file (PyTorch, MindSpore), from a training run (its workdir:
the run names its model, ``model_kwargs``, classes and input size) or a random initialisation.
Each export checks the output location first, writes to a temporary file in the same
directory, verifies that file, and only then renames it onto the requested path: a failed
export leaves nothing behind and never replaces an existing file. Inputs and outputs may be
``gs://`` paths (an output is written and verified locally, then uploaded).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import flax.linen as nn
import jax
import numpy as np
import onnx
from flax import traverse_util

from ghostnets_jax import storage
from ghostnets_jax.convert import orbax_run
from ghostnets_jax.convert.formats import load_checkpoint
from ghostnets_jax.export.onnx import (ExportError, Verification, compare, export_onnx, jax_reference,
                                       sample_images, verify_onnx)
from ghostnets_jax.export.rewrites import op_types
from ghostnets_jax.initialize import init_variables
from ghostnets_jax.registry import create_model, get_spec


def check_output_path(path: str) -> None:
  """Raises :class:`ExportError` unless a file can be created at ``path``."""
  if storage.is_remote(path):
    try:
      storage.check_reachable(path, '--out')
    except storage.StorageError as e:
      raise ExportError(str(e)) from None
    return
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
  """Yields a temporary path next to ``path``; renamed onto it on success, removed on failure.
  A bucket ``path`` gets a local temporary file, uploaded on success."""
  check_output_path(path)
  if storage.is_remote(path):
    with tempfile.TemporaryDirectory(prefix='ghostnets_jax-export-') as d:
      tmp = os.path.join(d, storage.path(path).name)
      yield tmp
      storage.upload(tmp, path)
    return
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
    return traverse_util.flatten_dict(jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x))
  one, two, have = shapes(1), shapes(2), traverse_util.flatten_dict(variables)
  for path, leaf in one.items():
    if leaf.shape != two[path].shape and path in have:
      return int(have[path].shape[-1])
  return 0


@dataclasses.dataclass
class Source:
  """What an export reads: the registry name, the network, its variables, the input size and the
  preprocessing recorded in the file's metadata."""
  name: str
  model: nn.Module
  variables: dict
  input_size: int
  preprocessing: dict
  weights: str


def _preprocessing(spec, recorded: Mapping[str, Any] = {}) -> dict:  # noqa: B006 (read only)
  """The eval preprocessing stored in the file's metadata: a run's record, else the registry's."""
  return {k: recorded.get(k, getattr(spec, k)) for k in ('mean', 'std', 'crop_pct', 'interpolation')}


def load_model(name: Optional[str], checkpoint: Optional[str] = None, *,
               num_classes: Optional[int] = None, input_size: Optional[int] = None,
               step: Union[str, int] = 'latest', weights: str = 'auto') -> Source:
  """The :class:`Source` of an export.

  ``checkpoint``: a training run (its workdir; ``step`` and ``weights`` pick the checkpoint, the
  run names its model, ``model_kwargs``, classes and input size: ``name``/``num_classes``, if
  given, must agree), a PyTorch/MindSpore file (any format of ``load_checkpoint``; ``name``
  needed), or None for random weights (``num_classes`` classes, else the registry's default).
  """
  if checkpoint and not storage.path(checkpoint).exists():
    raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
  if checkpoint and storage.path(checkpoint).is_dir() and orbax_run.is_run_checkpoint(
      storage.path(checkpoint) / 'checkpoints'):
    model, variables = orbax_run.load_run(checkpoint, step, weights, model=name)
    info = orbax_run.run_info(checkpoint)
    if num_classes is not None and num_classes != model.num_classes:
      raise ExportError(f'{checkpoint} is a run with {model.num_classes} classes, not '
                        f'{num_classes}: drop --num-classes.')
    spec = get_spec(info['model'])
    prep = _preprocessing(spec, info)
    size = input_size or info['image_size'] or spec.input_size
    return Source(info['model'], model, variables, size, prep, f'run {checkpoint} ({step})')
  if checkpoint and storage.path(checkpoint).is_dir() and not orbax_run.is_run_checkpoint(checkpoint):
    raise ExportError(f'{checkpoint} holds no checkpoint of a training run (checkpoints/<step>/'
                      'state): pass the --workdir of a main.py run that saved one, or a '
                      '.pth/.safetensors/.ckpt file.')
  if name is None:
    raise ExportError('name the model with --model (only a training run names its own model: '
                      'pass its --workdir as --checkpoint).')
  spec = get_spec(name)
  size = input_size or spec.input_size
  prep = _preprocessing(spec)
  if checkpoint:
    variables = load_checkpoint(name, checkpoint, num_classes=num_classes)
    model = create_model(name, num_classes=num_classes_of(name, variables))
    return Source(name, model, variables, size, prep, os.path.basename(checkpoint))
  model = create_model(name, **({} if num_classes is None else {'num_classes': num_classes}))
  variables = init_variables(model, (1, size, size, getattr(model, 'in_chans', 3)))
  return Source(name, model, variables, size, prep, 'random initialisation')


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
    lines += [f'  wrote: {f} ({storage.path(f).stat().length / 2**20:.1f} MiB)' for f in self.files]
    return '\n'.join(lines)


def _onnx_of(src: Source, *, layout: str, deploy: bool, slice_as_conv: bool) -> onnx.ModelProto:
  meta = dict(model=src.name, num_classes=src.model.num_classes, input_size=src.input_size,
              weights=src.weights, **src.preprocessing)
  return export_onnx(src.model, src.variables, src.input_size, layout=layout, deploy=deploy,
                     slice_as_conv=slice_as_conv, metadata=meta)


def _source(name: Optional[str], checkpoint: Optional[str], num_classes: Optional[int],
            input_size: Optional[int], step: Union[str, int], weights: str,
            model_and_variables: Optional[tuple[nn.Module, dict]]) -> Source:
  if model_and_variables is None:
    return load_model(name, checkpoint, num_classes=num_classes, input_size=input_size,
                      step=step, weights=weights)
  spec = get_spec(name)
  prep = _preprocessing(spec)
  return Source(name, *model_and_variables, input_size or spec.input_size, prep,
                os.path.basename(checkpoint) if checkpoint else 'random initialisation')


def export_onnx_file(name: Optional[str], out: str, *, checkpoint: Optional[str] = None,
                     deploy: bool = True, layout: str = 'NCHW', num_classes: Optional[int] = None,
                     input_size: Optional[int] = None, slice_as_conv: bool = False,
                     step: Union[str, int] = 'latest', weights: str = 'auto',
                     batch_sizes: Sequence[int] = (1, 4), atol: float = 1e-4,
                     model_and_variables: Optional[tuple[nn.Module, dict]] = None,
                     reference: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> ExportReport:
  """Exports model ``name`` to ``out`` (ONNX), verified by ``onnx.checker`` and onnxruntime vs JAX.

  ``checkpoint``, ``step``, ``weights``: see :func:`load_model` (a training run needs no
  ``name``). ``model_and_variables`` replaces loading; ``reference`` (NHWC images -> logits)
  replaces the jitted JAX forward of the model.
  """
  if name is not None:
    get_spec(name)
  check_output_path(out)
  src = _source(name, checkpoint, num_classes, input_size, step, weights, model_and_variables)
  proto = _onnx_of(src, layout=layout, deploy=deploy, slice_as_conv=slice_as_conv)
  size = src.input_size
  with atomic_output(out) as tmp:
    onnx.save(proto, tmp)
    verification = verify_onnx(tmp, reference or jax_reference(src.model, src.variables),
                               (size, size, getattr(src.model, 'in_chans', 3)), layout=layout,
                               batch_sizes=batch_sizes, atol=atol)
  return ExportReport(out, src.name, op_types(proto),
                      ['onnx.checker (full check)', f'onnxruntime: {verification}'], [out])


def export_mindspore_file(name: Optional[str], out: str, *, checkpoint: Optional[str] = None,
                          deploy: bool = True, layout: str = 'NCHW', num_classes: Optional[int] = None,
                          input_size: Optional[int] = None, slice_as_conv: bool = False,
                          step: Union[str, int] = 'latest', weights: str = 'auto',
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
  if name is not None:
    get_spec(name)
  check_output_path(out)
  ckpt_path = (out[:-len('.mindir')] if out.endswith('.mindir') else out) + '.ckpt'
  src = _source(name, checkpoint, num_classes, input_size, step, weights, model_and_variables)
  proto = onnx_model or _onnx_of(src, layout=layout, deploy=deploy, slice_as_conv=slice_as_conv)
  size = src.input_size
  x = sample_images(batch_size, (size, size, getattr(src.model, 'in_chans', 3)))
  ref = (reference or jax_reference(src.model, src.variables))(x)

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
  return ExportReport(out, src.name, op_types(proto), checks,
                      [out] + ([ckpt_path] if ckpt else []))


__all__ = ['ExportReport', 'Source', 'Verification', 'atomic_output', 'check_output_path',
           'export_mindspore_file', 'export_onnx_file', 'load_model', 'num_classes_of']
