"""The package as a user installs it.

* The wheel (built from pyproject.toml) ships the embedded demo dataset, its licence and the
  project's Apache-2.0 LICENSE, under the version ``ghostnets_jax.__version__`` states.
* The base install (the wheel without extras, in a fresh virtual environment without the system's
  packages) creates a model, runs it, re-parameterizes it and converts a numpy / safetensors state
  dict, with TensorFlow, PyTorch, onnxruntime and MindSpore absent (neither installed nor imported).
* ``[train]``: installing it in a fresh environment takes minutes (TensorFlow alone is ~600 MB),
  so pip resolves it (``--dry-run --report``) on top of the base install, and one demo training
  step runs from the installed copy of the package (``pip install --no-deps --target``) with the
  test environment's training packages, from a directory outside the source tree.

The demo step runs in the background while the base environment is built (2 cores); together
about 70-80 s on a loaded 2-core machine.
"""
from __future__ import annotations

import ast
import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

# One worker runs the three tests (they share the wheel and the background demo step); CI runs them.
pytestmark = pytest.mark.xdist_group('package')

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEMO_FILES = ('ghostnets_jax/data/files/fashion_mnist_12k.npz',
              'ghostnets_jax/data/files/LICENSE-fashion-mnist',
              # the oneDNN CPU kernel's source, built on first use (ghostnets_jax.layers.onednn)
              'ghostnets_jax/layers/csrc/onednn_conv.cc')
ABSENT = ('tensorflow', 'tensorflow-cpu', 'torch', 'onnxruntime', 'mindspore', 'jax2onnx')
# Compiles run once per process here: XLA's lowest backend optimisation compiles them ~3x faster.
FAST_XLA = {'XLA_FLAGS': '--xla_backend_optimization_level=0', 'TF_CPP_MIN_LOG_LEVEL': '2'}


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
  p = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
  assert p.returncode == 0, f'{" ".join(map(str, cmd))}\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}'
  return p


def _env(**extra: str) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env.update(FAST_XLA, **extra)
  return env


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp('dist')
  src = tmp_path_factory.mktemp('src')   # a copy, so the build's egg-info/build dirs stay out of the tree
  for name in ('pyproject.toml', 'README.md', 'LICENSE'):
    shutil.copy(ROOT / name, src / name)
  shutil.copytree(ROOT / 'ghostnets_jax', src / 'ghostnets_jax',
                  ignore=shutil.ignore_patterns('__pycache__'))
  _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
        '-w', str(out), str(src)])
  (whl,) = out.glob('ghostnets_jax-*.whl')
  return whl


@pytest.fixture(scope='module')
def demo_step(wheel, tmp_path_factory):
  """Starts one demo training step from the installed copy (background): (process, run dir)."""
  run = tmp_path_factory.mktemp('run')
  target = run / 'site'
  _run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-compile',
        '--target', str(target), str(wheel)])
  shutil.copy(ROOT / 'main.py', run / 'main.py')   # the user-side entry point and configs
  shutil.copytree(ROOT / 'configs', run / 'configs', ignore=shutil.ignore_patterns('__pycache__'))
  argv = ['main.py', '--config=configs/g_ghost_regnet.py:demo', f'--workdir={run / "wd"}',
          '--mode=train', '--config.num_train_steps=1', f'--config.data.data_dir={run / "tfds"}']
  code = ('import runpy, sys, ghostnets_jax\n'
          f'assert ghostnets_jax.__file__.startswith({str(target)!r}), ghostnets_jax.__file__\n'
          f'sys.argv = {argv!r}\n'
          "runpy.run_path('main.py', run_name='__main__')\n")
  proc = subprocess.Popen([sys.executable, '-c', code], cwd=run, env=_env(PYTHONPATH=str(target)),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  yield proc, run
  if proc.poll() is None:
    proc.kill()
    proc.communicate()


def test_wheel_ships_the_demo_data_the_kernel_source_the_licences_and_one_version(wheel):
  names = set(zipfile.ZipFile(wheel).namelist())
  for f in DEMO_FILES:
    assert f in names, f
  info = wheel.name.split('-')[0] + '-' + wheel.name.split('-')[1] + '.dist-info'
  license_text = zipfile.ZipFile(wheel).read(f'{info}/licenses/LICENSE').decode()
  assert 'Apache License' in license_text and 'Version 2.0, January 2004' in license_text
  assert (ROOT / 'LICENSE').read_text() == license_text
  meta = zipfile.ZipFile(wheel).read(f'{info}/METADATA').decode()
  assert 'License-Expression: Apache-2.0' in meta
  # The one version source: ghostnets_jax/__init__.py's literal, as pyproject.toml reads it.
  tree = ast.parse((ROOT / 'ghostnets_jax' / '__init__.py').read_text())
  (version,) = [n.value.value for n in tree.body if isinstance(n, ast.Assign)
                and any(getattr(t, 'id', None) == '__version__' for t in n.targets)]
  assert f'\nVersion: {version}\n' in meta and wheel.name.split('-')[1] == version
  base = [l for l in meta.splitlines() if l.startswith('Requires-Dist:') and 'extra ==' not in l]
  assert base and not [l for l in base for p in ('tensorflow', 'torch', 'onnx', 'mindspore', 'clu')
                       if p in l.lower()], base


BASE_CHECK = r'''
import importlib.metadata as md, sys
import jax, numpy as np
import ghostnets_jax as gj
assert gj.__file__.startswith(sys.prefix), gj.__file__
assert md.version('ghostnets_jax') == gj.__version__
name = 'ghostnet_050'
model = gj.create_model(name, num_classes=10)
x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
# Variables of the model's own shapes (numpy draws, no init compile), by the installed package.
from ghostnets_jax.initialize import random_variables
variables = random_variables(model, 32, seed=1, unit_keys=('var',))
forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
logits = np.asarray(forward(variables, x))
assert logits.shape == (2, 10) and np.isfinite(logits).all() and logits.std() > 1e-3
# Deploy form: no BatchNorm left, same function.
deploy_model, deploy_vars = gj.reparameterize(model, variables)
assert 'batch_stats' not in deploy_vars or not jax.tree_util.tree_leaves(deploy_vars['batch_stats'])
deployed = np.asarray(jax.jit(deploy_model.apply)(deploy_vars, x))
np.testing.assert_allclose(deployed, logits, rtol=1e-4, atol=1e-4 * np.abs(logits).max())
# A PyTorch-layout numpy state dict, through a safetensors file, back into Flax.
state_dict = gj.convert.to_torch(name, variables)
assert all(isinstance(v, np.ndarray) for v in state_dict.values()), 'numpy state dict'
from safetensors.numpy import load_file, save_file
save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()}, 'model.safetensors')
back = gj.convert.from_torch(name, load_file('model.safetensors'))
for (p, a), b in zip(jax.tree_util.tree_leaves_with_path(variables), jax.tree_util.tree_leaves(back)):
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(p))
assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(variables)
np.testing.assert_array_equal(np.asarray(forward(back, x)), logits)
assert gj.model_info(name)['params'] > 0
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'torch', 'onnxruntime',
                                                          'mindspore', 'optax', 'orbax'})
assert not heavy, f'the base path imported {heavy}'
installed = []
for dist in %r:
  try:
    md.version(dist)
    installed.append(dist)
  except md.PackageNotFoundError:
    pass
assert not installed, f'the base install pulled in {installed}'
print('ok')
''' % (ABSENT,)


def test_base_install_runs_converts_and_reparameterizes_without_the_extras(wheel, demo_step,
                                                                           tmp_path):
  venv = tmp_path / 'venv'
  # No system site packages; this environment's pip installs into it (--python), from the
  # package index pip is configured with.
  _run([sys.executable, '-m', 'venv', '--without-pip', str(venv)])
  py = str(venv / 'bin' / 'python')
  pip = [sys.executable, '-m', 'pip', '--python', py]
  _run(pip + ['install', '-q', '--no-compile', str(wheel)], cwd=tmp_path, env=_env())
  # [train] resolves on top of the base install to the training stack, and nothing of export,
  # MindSpore or PyTorch (resolved while the base check runs).
  report = tmp_path / 'train.json'
  resolve = subprocess.Popen(pip + ['install', '--dry-run', '-q', '--report', str(report),
                                    f'{wheel}[train]'], cwd=tmp_path, env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  work = tmp_path / 'work'
  work.mkdir()
  p = _run([py, '-I', '-c', BASE_CHECK], cwd=work, env=_env())
  assert p.stdout.strip().endswith('ok')
  out, _ = resolve.communicate(timeout=300)
  assert resolve.returncode == 0, out[-3000:]
  resolved = {i['metadata']['name'].lower().replace('_', '-')
              for i in json.loads(report.read_text())['install']}
  for want in ('tensorflow-cpu', 'tensorflow-datasets', 'clu', 'ml-collections', 'tensorboard',
               'pillow', 'gcsfs'):
    assert want in resolved, (want, sorted(resolved))
  assert not resolved & {'torch', 'onnxruntime', 'mindspore', 'jax2onnx', 'onnx'}, sorted(resolved)


def test_demo_training_step_from_the_installed_package(demo_step):
  proc, run = demo_step
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out[-6000:]
  assert 'step 1/1' in out, out[-3000:]
  # The demo data came out of the installed package into the run's data_dir, and step 1 is saved.
  assert (run / 'tfds' / 'fashion_mnist_embedded').is_dir()
  assert (run / 'wd' / 'checkpoints' / '1').is_dir(), sorted(p.name for p in (run / 'wd').rglob('*'))
  assert ROOT not in pathlib.Path(run).parents
