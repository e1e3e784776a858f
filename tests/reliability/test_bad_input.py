"""Bad input gets an error naming the problem and the fix, and changes nothing the user had: config
overrides on the command line, a workdir holding another run (training or eval), a missing
dataset or ImageNet manual_dir, images of the wrong dtype or shape, an empty split, a batch that
does not split over the devices."""
from __future__ import annotations

import json
import os
import types

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.reliability.conftest import copy_run, files, restore
from tests.reliability.tiny_config import RUN
from tests.train_helpers import ROOT, embedded_data_dir, run_python, tiny_config

pytestmark = pytest.mark.xdist_group('reliability')
DEMO = str(ROOT / 'configs' / 'g_ghost_regnet.py') + ':demo'


# ------------------------------------------------------------------ --config.<field>=<value>
def _parse(*overrides: str):
  """``main.py``'s flag parsing of ``--config=<demo> <overrides>`` on fresh flags."""
  from absl import flags
  from ml_collections import config_flags
  from ghostnets_jax.train import cli
  argv = ['main.py', f'--config={DEMO}', *overrides]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, flag_values=fv, sys_argv=argv)
  cli.parse_flags(argv, fv)
  return fv.config


@pytest.mark.parametrize('override,msg', [
    ('--config.nope=1', r"the config has no field 'nope'; its fields: aug, batch_size, .* Fix the "
                        r'name \(every field is described in configs/default.py\)'),
    ('--config.optim.lrr=0.1', r"config.optim has no field 'lrr' \(did you mean 'lr'\?\)"),
    ('--config.model_kwargs.foo=2', r"config.model_kwargs has no field 'foo'.*keyword arguments"
                                    r'.*Pass the whole dict instead, e.g. '
                                    r"--config.model_kwargs=\"\{'foo': 2\}\""),
])
def test_unknown_config_field_is_named_with_the_fix(override, msg):
  from ghostnets_jax.train.cli import ConfigOverrideError
  with pytest.raises(ConfigOverrideError, match=msg):
    _parse(override)


@pytest.mark.parametrize('override,msg', [
    ('--config.batch_size=12.5', r"config.batch_size is an integer \(the config file has 128\) "
                                 r"and '12.5' is not one. Give an integer, e.g. "
                                 r'--config.batch_size=128'),
    ('--config.ema.per_epoch=maybe', r'config.ema.per_epoch is a boolean .* e.g. '
                                     r'--config.ema.per_epoch=false'),
    ('--config.aug.crop_scale=abc', r'config.aug.crop_scale is a tuple of numbers \(the config file '
                                    r"has \(0.35, 1.0\)\), got \('abc',\)\. Give numbers, e.g. "),
    ('--config.sharding.mesh_shape=(2.5,1)', r'config.sharding.mesh_shape is a tuple of integers'),
])
def test_wrong_type_override_names_the_type_and_an_example(override, msg):
  from ghostnets_jax.train.cli import ConfigOverrideError
  with pytest.raises(ConfigOverrideError, match=msg):
    _parse(override)


def test_valid_overrides_still_parse():
  c = _parse('--config.batch_size=64', '--config.aug.crop_scale=(0.5, 1)',
             "--config.model_kwargs={'stem_width': 8}")
  assert (c.batch_size, c.aug.crop_scale, c.model_kwargs.to_dict()) == (64, (0.5, 1),
                                                                          {'stem_width': 8})


def _user_error(args: list[str], *expected: str, env: dict | None = None) -> str:
  """Runs ``python args``: exit status 2, one ``error:`` line holding ``expected``, no traceback."""
  p = run_python(args, env=env)
  out = p.communicate(timeout=300)[0]
  assert p.returncode == 2, out[-3000:]
  assert 'Traceback' not in out, out[-3000:]
  errors = [line for line in out.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1, out[-3000:]
  for text in expected:
    assert text in errors[0], errors[0]
  return errors[0]


def test_main_py_reports_a_bad_override_and_writes_nothing(tmp_path):
  _user_error(['main.py', f'--config={DEMO}', f'--workdir={tmp_path / "run"}',
               '--config.optim.lrr=0.1'],
              "--config.optim.lrr: config.optim has no field 'lrr' (did you mean 'lr'?)")
  assert not os.path.exists(tmp_path / 'run')


# ------------------------------------------------------------------- a workdir of another run
def _refused(workdir: str, fn, msg: str):
  from ghostnets_jax.train.workdir import RunMismatchError
  before = files(workdir)
  with pytest.raises(RunMismatchError, match=msg):
    fn()
  assert files(workdir) == before                      # nothing written, moved or deleted


def test_resuming_another_model_or_config_is_refused_unless_forced(baseline, tmp_path):
  from ghostnets_jax.train import trainer
  workdir = copy_run(baseline, tmp_path / 'run')
  run = json.load(open(os.path.join(workdir, 'run.json')))
  assert run['identity']['model'] == 'ghostnet_050' and run['identity']['num_classes'] == 10
  assert any(k.startswith('opt_state/') for k in run['state'])
  train = lambda **o: trainer.train_and_evaluate(tiny_config(**RUN, **o), workdir, mode='train')
  # another model: the state does not fit, force cannot help; fine-tuning from it can
  _refused(workdir, lambda: train(model='ghostnet_100'),
           rf'{workdir} holds a run of ghostnet_050 \(10 classes\); this config is ghostnet_100 '
           r'\(10 classes\)\. Cannot resume it: the train state differs \(.* with another shape '
           r".*model: run 'ghostnet_050', config 'ghostnet_100'.*Nothing in the workdir was "
           rf'changed\. Use another --workdir .*--config\.init\.checkpoint={workdir}')
  # another optimizer (a different state, no differing identity field)
  _refused(workdir, lambda: train(**{'optim.name': 'adamw'}),
           r'the train state differs \(\d+ only in the run \(opt_state/.*\d+ only in this config')
  # same state, another meaning (a module field): refused, then accepted with resume=force
  extra = {'model_kwargs.drop_rate': 0.3}
  _refused(workdir, lambda: train(**extra),
           r"Refusing to resume it with this config: model_kwargs: run \{.*\}, config \{.*'drop_rate"
           r"': 0.3.*pass --config.resume=force")
  before = files(os.path.join(workdir, 'checkpoints'))
  train(**extra, resume='force')                       # at its last step already: nothing to do
  assert files(os.path.join(workdir, 'checkpoints')) == before
  run = json.load(open(os.path.join(workdir, 'run.json')))
  assert run['identity']['model_kwargs']['drop_rate'] == 0.3
  assert 'drop_rate' not in run['previous'][0]['model_kwargs']     # the old identity is kept
  with pytest.raises(ValueError, match=r"config.resume must be one of \('auto', 'force'\)"):
    train(resume='always')


def test_extending_a_run_and_changing_its_schedule_is_allowed(baseline, tmp_path):
  """num_train_steps, lr, logging and checkpoint settings are not part of a run's identity."""
  from ghostnets_jax.train import trainer
  workdir = copy_run(baseline, tmp_path / 'run')
  trainer.train_and_evaluate(tiny_config(**{**RUN, 'num_train_steps': 7, 'optim.lr': 0.05,
                                            'checkpoint.keep': 2}), workdir, mode='train')
  step, _, data = restore(workdir)
  assert step == 7 and data['batch'] == 7


def test_eval_of_another_models_checkpoint_names_both(baseline, tmp_path):
  from ghostnets_jax.train import trainer
  workdir = copy_run(baseline, tmp_path / 'run')
  _refused(workdir, lambda: trainer.evaluate(tiny_config(**RUN, model='ghostnet_100'), workdir),
           r'holds a run of ghostnet_050 \(10 classes\); this config is ghostnet_100 \(10 '
           r'classes\)\. Cannot evaluate it: the train state differs')
  empty = tmp_path / 'typo'
  with pytest.raises(FileNotFoundError, match=r'no checkpoint in .*typo/checkpoints: --mode=eval '
                     r"evaluates a checkpoint of a training run; pass that run's --workdir"):
    trainer.evaluate(tiny_config(**RUN), str(empty))
  assert not empty.exists()                            # nothing created


# -------------------------------------------- the command lines: one message, no traceback, 2
TINY = 'tests/reliability/tiny_config.py'


def test_main_py_and_the_export_cli_report_user_errors_in_one_line(baseline, tmp_path):
  """A foreign workdir, a workdir with no run, a dataset that does not exist, an unreachable
  bucket (main.py) and a checkpoint of another class count (export): exit status 2, the message
  naming the problem and the fix, no traceback, nothing written."""
  workdir = copy_run(baseline, tmp_path / 'run')
  before = files(workdir)
  main = ['main.py', f'--config={TINY}', '--mode=train']
  _user_error([*main, f'--workdir={workdir}', '--config.model=ghostnet_100'],
              f'{workdir} holds a run of ghostnet_050', 'Use another --workdir')
  _user_error([*main, f'--workdir={tmp_path / "typo"}', '--mode=eval'],
              'no checkpoint in', "pass that run's --workdir")
  _user_error([*main, f'--workdir={tmp_path / "new"}', '--config.data.dataset=fashion_mnistt',
               f'--config.data.data_dir={tmp_path / "tfds"}'],
              "unknown TFDS dataset 'fashion_mnistt'", 'Set --config.data.dataset')
  _user_error([*main, '--workdir=gs://no-such-bucket/run'], 'gs://no-such-bucket/run',
              'STORAGE_EMULATOR_HOST', env={'STORAGE_EMULATOR_HOST': 'http://127.0.0.1:9'})
  out = str(tmp_path / 'm.onnx')
  _user_error(['-m', 'ghostnets_jax.export', 'onnx', '--checkpoint', workdir, '--num-classes', '5',
               '--out', out], 'is a run with 10 classes, not 5', 'drop --num-classes')
  assert files(workdir) == before and not os.path.exists(out)
  assert not os.path.exists(tmp_path / 'typo') and not os.path.exists(tmp_path / 'new')


# ------------------------------------------------------------------------------------- data
def test_a_dataset_that_cannot_be_downloaded_says_how_to_prepare_it(tmp_path, monkeypatch):
  """Offline, TFDS retries for minutes and raises a bare ConnectionError; the download is cut
  short here (no network in the test) and the error names the dataset, data_dir and the fix."""
  import requests
  from tensorflow_datasets.core.download import downloader
  from ghostnets_jax.data import datasets as DS

  def offline(url, **kwargs):
    raise requests.exceptions.ConnectionError(f"Failed to resolve 'storage.googleapis.com' ({url})")
  monkeypatch.setattr(downloader, '_open_url', offline)
  data_dir = tmp_path / 'tfds'
  (data_dir / 'mine').mkdir(parents=True)
  (data_dir / 'mine' / 'keep.txt').write_text('user data')
  with pytest.raises(DS.DatasetNotFoundError,
                     match=rf"mnist is not prepared in {data_dir}/mnist/.* and preparing it failed "
                           r"\(.*ConnectionError: Failed to resolve 'storage.googleapis.com'.*\)\. "
                           r'Prepare it once on a machine with internet access: tfds build mnist '
                           r'--data_dir=DIR --file_format=array_record.*--config.data.data_dir=DIR'):
    DS.prepare('mnist', str(data_dir))
  assert (data_dir / 'mine' / 'keep.txt').read_text() == 'user data'
  with pytest.raises(DS.DatasetNotFoundError, match=r"unknown TFDS dataset 'fashion_mnistt'; did "
                     r'you mean fashion_mnist.*\? Set --config.data.dataset'):
    DS.prepare('fashion_mnistt', str(data_dir))


def test_missing_imagenet_manual_files_are_listed_with_where_to_put_them(tmp_path):
  from ghostnets_jax.train import experiment
  from ghostnets_jax.data.datasets import DatasetNotFoundError
  manual = tmp_path / 'manual'
  manual.mkdir()
  (manual / 'ILSVRC2012_img_val.tar').write_bytes(b'')   # one of the two is there
  c = tiny_config(**{'data.dataset': 'imagenet2012', 'data.eval_split': 'validation',
                     'data.data_dir': str(tmp_path / 'tfds'), 'data.manual_dir': str(manual)})
  with pytest.raises(DatasetNotFoundError) as e:
    experiment.build(c, str(tmp_path / 'run'))
  msg = str(e.value)
  assert f'ILSVRC2012_img_train.tar not found in the manual_dir {manual}' in msg
  assert f'{manual}/ILSVRC2012_img_train.tar  (training images' in msg
  assert f'{manual}/ILSVRC2012_img_val.tar  (validation images' in msg
  assert 'https://image-net.org/download-images' in msg and '--config.data.manual_dir' in msg
  assert os.listdir(manual) == ['ILSVRC2012_img_val.tar']


@pytest.mark.parametrize('feature,msg', [
    (tfds.features.Tensor(shape=(28, 28, 3), dtype=np.float32),
     r'the "image" feature is Tensor of dtype float32 and shape \(28, 28, 3\)'),
    (tfds.features.Tensor(shape=(28, 28), dtype=np.uint8),
     r'the "image" feature is Tensor of dtype uint8 and shape \(28, 28\)'),
    (tfds.features.Image(shape=(None, None, 3), dtype=np.uint16),
     r'the "image" feature is Image of dtype uint16'),
])
def test_a_dataset_of_images_the_pipeline_cannot_read_is_refused(feature, msg):
  from ghostnets_jax.data import datasets as DS
  features = tfds.features.FeaturesDict({'image': feature, 'label': tfds.features.ClassLabel(
      num_classes=2)})
  builder = types.SimpleNamespace(info=types.SimpleNamespace(features=features))
  with pytest.raises(ValueError, match=msg + r'.*the input pipeline reads 8-bit images.*Store the '
                     r'images as tfds.features.Image\(shape=\(None, None, 3\)\)'):
    DS.open_source('float_images', 'train', builder=builder)


@pytest.mark.parametrize('bad,msg', [
    (lambda x: x.transpose(0, 3, 1, 2), r'expected 3 channels in the last axis \(NHWC\).*This looks '
                                        r'like NCHW \(PyTorch layout\); use x.transpose\(0, 2, 3, 1\)'),
    (lambda x: x.astype(np.uint8), r'expected floating-point images, got dtype uint8\. Convert and '
                                   r'normalise first'),
])
def test_images_of_the_wrong_layout_or_dtype_in_the_train_step(bad, msg, tmp_path):
  """The jitted train step (traced only, nothing compiles) stops with the model's message."""
  from ghostnets_jax.train import experiment, step as step_lib
  exp = experiment.build(tiny_config(**RUN), str(tmp_path / 'run'))
  exp.checkpointer.close()
  fn = step_lib.make_train_step(exp.model, exp.tx, exp.resolved.step_config, exp.schedule)
  images = np.zeros((32, 32, 32, 3), np.float32)
  batch = {'image': bad(images), 'label': np.zeros(32, np.int32),
           'image_id': np.arange(32, dtype=np.int32)}
  with pytest.raises(ValueError, match=msg):
    jax.eval_shape(fn, exp.abstract, batch, None)


def test_an_empty_split_names_the_splits_and_the_field(tmp_path):
  from ghostnets_jax.train import experiment
  from ghostnets_jax.data import datasets as DS
  with pytest.raises(ValueError, match=r"fashion_mnist_embedded split 'train\[5:5\]' is empty \(0 "
                     r'examples in .*\): nothing to train or evaluate on\. Available splits: '
                     r'train \(10000\), test \(2000\); set --config.data.train_split'):
    experiment.build(tiny_config(**{'data.train_split': 'train[5:5]'}), str(tmp_path / 'run'))
  with pytest.raises(ValueError, match=r"has no split 'validation'; available: train \(10000\), "
                     r'test \(2000\)\. Set --config.data.train_split / --config.data.eval_split'):
    DS.open_source('fashion_mnist_embedded', 'validation', embedded_data_dir())
  assert not (tmp_path / 'run').exists()


def test_a_batch_that_does_not_split_over_the_devices_suggests_sizes(tmp_path):
  from ghostnets_jax.train import experiment, mesh as mesh_lib
  with pytest.raises(ValueError, match=r'batch_size=100 is not divisible by devices x '
                     r'grad_accum_steps = 8 x 1 = 8: every device takes an equal share of the '
                     r'global batch\. Use --config.batch_size=96 or --config.batch_size=104'):
    mesh_lib.check_batch_size(100, 8)
  mesh_lib.check_batch_size(96, 8)
  n = jax.device_count()            # through the trainer, on this process' devices
  with pytest.raises(ValueError, match=rf'batch_size={3 * n + 1} is not divisible by devices x '
                     rf'grad_accum_steps = {n} x 3 = {3 * n}'):
    experiment.build(tiny_config(batch_size=3 * n + 1, **{'optim.grad_accum_steps': 3}),
                  str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_the_export_cli_lets_an_unexpected_error_through_with_its_traceback(monkeypatch, tmp_path):
  """Only user errors become one line and status 2; a bug (here a KeyError) propagates."""
  from ghostnets_jax.export import __main__ as export_cli, pipeline
  from ghostnets_jax.export.onnx import ExportError

  def fails(error):
    def export(*args, **kwargs):
      raise error
    return export
  argv = ['onnx', '--model', 'ghostnet_050', '--out', str(tmp_path / 'm.onnx')]
  monkeypatch.setattr(pipeline, 'export_onnx_file', fails(KeyError('a bug')))
  with pytest.raises(KeyError, match='a bug'):
    export_cli.main(argv)
  monkeypatch.setattr(pipeline, 'export_onnx_file', fails(ExportError('bad input; the fix')))
  assert export_cli.main(argv) == 2
