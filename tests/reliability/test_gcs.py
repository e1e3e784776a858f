"""A run in a bucket, end to end, against a real Cloud Storage API server (fake-gcs-server):
train into ``gs://bkt/...`` with TensorBoard on, SIGKILL after the first committed checkpoint,
rerun (bit-identical to the uninterrupted local run), evaluate from the bucket, export ONNX and
MINDIR from the bucket and check their top-1 in onnxruntime / MindSpore against the eval's. The
commands run in an empty working directory that must stay empty. Then the bad inputs: no
emulator, no credentials, no bucket."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.reliability import gcs
from tests.reliability.conftest import CONFIG, STEP_LINE, assert_same_state, restore
from tests.reliability.tiny_config import RUN
from tests.train_helpers import ROOT, embedded_data_dir, tiny_config

pytestmark = pytest.mark.xdist_group('infra')   # shares the baseline with test_multihost
RUN_URL = f'gs://{gcs.BUCKET}/runs/tiny'


@pytest.fixture(scope='module')
def bucket_env():
  """The server, and this process pointed at it (the tests read the bucket themselves)."""
  with gcs.server() as env, pytest.MonkeyPatch.context() as mp:
    for k, v in env.items():
      mp.setenv(k, v)
    yield env


def launch(args: list[str], cwd, env: dict) -> subprocess.Popen:
  """``python args`` (repo modules on PYTHONPATH) from ``cwd``."""
  full = dict(os.environ, PYTHONPATH=str(ROOT), **env)
  return subprocess.Popen([sys.executable, *args], cwd=cwd, env=full, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def finish(p: subprocess.Popen, timeout: int = 900) -> tuple[int, str]:
  """Waits for ``p``: (returncode, the rest of its output); killed on a timeout."""
  try:
    out = p.communicate(timeout=timeout)[0]
  except subprocess.TimeoutExpired:
    p.kill()
    p.communicate()
    raise
  return p.returncode, out


def main_args(workdir: str, *extra: str) -> list[str]:
  return [str(ROOT / 'main.py'), f'--config={ROOT / CONFIG}', f'--workdir={workdir}', *extra]


def committed_steps(url: str) -> list[int]:
  from ghostnets_jax.convert.orbax_run import saved_steps
  return list(saved_steps(f'{url}/checkpoints'))


def event_steps(url: str, tag: str) -> set[int]:
  """Steps of ``tag`` in every TensorBoard event file of the run directory ``url``."""
  from etils import epath
  from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
  steps = set()
  for f in epath.Path(url).glob('events.out.tfevents.*'):
    local = os.path.join(os.environ['PYTEST_TMP_EVENTS'], f.name)
    with open(local, 'wb') as out:
      out.write(f.read_bytes())
    for event in EventFileLoader(local).Load():
      steps.update(event.step for v in event.summary.value if v.tag == tag)
  return steps


def onnx_correct(onnx_path: str, batches) -> int:
  import onnxruntime as ort
  sess = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
  name = sess.get_inputs()[0].name
  correct = 0
  for b in batches:
    logits = sess.run(None, {name: b['image'].transpose(0, 3, 1, 2)})[0]
    correct += int(((logits.argmax(-1) == b['label']) * b['mask']).sum())
  return correct


def mindir_correct(mindir_path: str, batches, batch_size: int) -> int:
  from ghostnets_jax.export import mindspore as gms
  cell = gms.load_mindir(mindir_path)
  correct = 0
  for b in batches:
    for i in range(0, len(b['label']), batch_size):
      logits = gms.run_cell(cell, b['image'][i:i + batch_size].transpose(0, 3, 1, 2))
      correct += int(((logits.argmax(-1) == b['label'][i:i + batch_size])
                      * b['mask'][i:i + batch_size]).sum())
  return correct


def eval_batches(workdir: str):
  """The eval split exactly as ``main.py --mode=eval`` feeds it (same preprocessing, padding
  masked), as numpy batches."""
  from ghostnets_jax.train import experiment
  exp = experiment.build(tiny_config(**RUN), workdir, train=False)
  try:
    ds, _ = exp.eval_batches()
    return list(ds.as_numpy_iterator())
  finally:
    exp.checkpointer.close()


def test_bucket_run_kill_resume_eval_export(baseline, bucket_env, tmp_path, monkeypatch):
  embedded_data_dir()
  cwd = tmp_path / 'cwd'
  cwd.mkdir()
  monkeypatch.setenv('PYTEST_TMP_EVENTS', str(tmp_path))

  # 1. Train into the bucket; SIGKILL once a checkpoint is committed there (async save).
  p = launch(main_args(RUN_URL, '--mode=train'), cwd, bucket_env)
  lines, killed_at = [], None
  for line in p.stdout:
    lines.append(line)
    m = STEP_LINE.search(line)
    if m and committed_steps(RUN_URL):
      killed_at = int(m.group(1))
      p.send_signal(signal.SIGKILL)
      break
  rc, rest = finish(p)
  log = ''.join(lines) + rest
  assert killed_at is not None and rc == -signal.SIGKILL, log[-3000:]
  before = committed_steps(RUN_URL)
  assert before and max(before) < RUN['num_train_steps'], (before, log[-3000:])

  # 2. Rerun: resumes from the bucket at its newest committed step, ends bit-identical to the
  #    uninterrupted local run.
  rc, log = finish(launch(main_args(RUN_URL, '--mode=train'), cwd, bucket_env))
  assert rc == 0, log[-4000:]
  resumed = re.search(r'resumed at step (\d+)', log)
  assert resumed and int(resumed.group(1)) == max(before), log[-4000:]
  step, got, data = restore(RUN_URL)
  want_step, want, want_data = restore(baseline)
  assert step == want_step == RUN['num_train_steps'] and data == want_data
  assert_same_state(got, want)
  assert event_steps(RUN_URL, 'train/loss') == set(range(1, RUN['num_train_steps'] + 1))

  # 3. Evaluate from the bucket: the result lands there.
  rc, log = finish(launch(main_args(RUN_URL, '--mode=eval'), cwd, bucket_env))
  assert rc == 0, log[-4000:]
  from etils import epath
  result = json.loads((epath.Path(RUN_URL) / f'eval_step{step}_ema.json').read_text())
  assert result['step'] == step and result['count'] > 0

  # 4. Export what was trained, from the bucket (model, kwargs, classes, size from the run); the
  #    runtimes' top-1 on the same eval images is the eval's.
  onnx_path, mindir_path = tmp_path / 'run.onnx', tmp_path / 'run.mindir'
  rc, log = finish(launch(['-m', 'ghostnets_jax.export', 'onnx', '--checkpoint', RUN_URL,
                           '--out', str(onnx_path)], cwd, bucket_env))
  assert rc == 0 and 'ghostnet_050 -> ' in log, log[-3000:]
  rc, log = finish(launch(['-m', 'ghostnets_jax.export', 'mindspore', '--checkpoint', RUN_URL,
                           '--batch-size', '50', '--out', str(mindir_path)], cwd, bucket_env))
  assert rc == 0, log[-3000:]
  batches = eval_batches(RUN_URL)
  assert sum(b['mask'].sum() for b in batches) == result['count']
  eval_correct = round(result['top1'] * result['count'])   # top-1 is a float32 mean
  assert onnx_correct(str(onnx_path), batches) == eval_correct
  assert mindir_correct(str(mindir_path), batches, 50) == eval_correct

  # 5. A run of another model, named on the command line, is refused; so is a bucket path with
  #    no run.
  rc, log = finish(launch(['-m', 'ghostnets_jax.export', 'onnx', '--checkpoint', RUN_URL,
                           '--model', 'ghostnet_100', '--out', str(tmp_path / 'x.onnx')],
                          cwd, bucket_env))
  assert rc == 2 and 'is a run of ghostnet_050, not ghostnet_100' in log, log[-2000:]
  rc, log = finish(launch(['-m', 'ghostnets_jax.export', 'onnx', '--checkpoint',
                           f'gs://{gcs.BUCKET}/nothing-here', '--out', str(tmp_path / 'x.onnx')],
                          cwd, bucket_env))
  assert rc == 2 and 'checkpoint not found' in log, log[-2000:]
  assert not (tmp_path / 'x.onnx').exists()
  assert os.listdir(cwd) == []   # nothing local: not a 'gs:' folder, no events, no scratch


def test_unreachable_emulator_is_one_message_and_writes_nothing(tmp_path):
  embedded_data_dir()
  cwd = tmp_path / 'cwd'
  cwd.mkdir()
  closed = f'http://127.0.0.1:{gcs.free_port()}'
  env = {'STORAGE_EMULATOR_HOST': closed, 'TENSORSTORE_GCS_HTTP_URL': closed, **gcs.NO_METADATA}
  t = time.time()
  rc, log = finish(launch(main_args(f'gs://{gcs.BUCKET}/run'), cwd, env), timeout=300)
  assert rc == 2, log[-3000:]
  assert f'STORAGE_EMULATOR_HOST={closed} is not reachable' in log and 'Traceback' not in log
  assert time.time() - t < 120   # seconds of checks after the imports, not retries for minutes
  assert os.listdir(cwd) == []


def test_missing_credentials_and_bucket_name_what_to_set(bucket_env, tmp_path, monkeypatch):
  from ghostnets_jax import storage
  with pytest.raises(storage.StorageError, match=f'bucket gs://nobucket does not exist'):
    storage.check_reachable('gs://nobucket/run', '--workdir')
  with pytest.raises(storage.StorageError, match='TENSORSTORE_GCS_HTTP_URL'):   # two servers
    monkeypatch.setenv('TENSORSTORE_GCS_HTTP_URL', 'http://127.0.0.1:1')
    storage.check_reachable(f'gs://{gcs.BUCKET}/run', '--workdir')
  # No emulator and no credentials anywhere (no key file, no gcloud login, not on GCE).
  for k in ('STORAGE_EMULATOR_HOST', 'TENSORSTORE_GCS_HTTP_URL', 'GOOGLE_APPLICATION_CREDENTIALS'):
    monkeypatch.delenv(k, raising=False)
  monkeypatch.setenv('CLOUDSDK_CONFIG', str(tmp_path / 'gcloud'))
  monkeypatch.setenv('HOME', str(tmp_path))
  t = time.time()
  with pytest.raises(storage.StorageError, match='no Google Cloud credentials.*GOOGLE_APPLICATION_'
                     'CREDENTIALS.*STORAGE_EMULATOR_HOST'):
    storage.check_reachable(f'gs://{gcs.BUCKET}/run', '--workdir')
  assert time.time() - t < 10
