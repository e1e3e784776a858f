"""The zoo report and the benchmarks' plumbing, without timing anything: the report from given
latencies (unknown ones as '-'), the plots written, the PyTorch reference lookup and the model
name patterns of the benchmark scripts."""
import json
import re

import pytest

from ghostnets_jax import reference_torch, timing, zoo


def test_report_from_stored_latencies_writes_table_json_and_plots(tmp_path):
  names = ['ghostnet_050', 'repghostnet_050']
  (tmp_path / 'zoo.json').write_text(json.dumps(
      {'machine': 'test machine', 'rows': [{'name': 'ghostnet_050', 'latency_ms': 12.5}]}))
  rows = zoo.write_report(names, str(tmp_path), measure=False)
  assert [r['name'] for r in rows] == names
  assert rows[0]['latency_ms'] == 12.5 and rows[1]['latency_ms'] is None
  md = (tmp_path / 'zoo.md').read_text()
  assert '> test machine' in md
  assert '| `ghostnet_050` | ghostnet | 224 | 2.59 |' in md and '| 12.5 | 66.2 |' in md
  assert '| - | 66.9 |' in md  # repghostnet_050: no latency stored, nothing measured
  for f in zoo.REPORT_FILES:
    assert (tmp_path / f).stat().st_size > 0, f
  # the stored counts are the networks' own: timm's models of the same names, built on the meta
  # device (shapes only), and the published 2.6M / 2.3M (GhostNet, RepGhost READMEs)
  import timm
  import torch
  stored = json.loads((tmp_path / 'zoo.json').read_text())['rows']
  with torch.device('meta'):
    timm_params = [sum(p.numel() for p in timm.create_model(n).parameters()) for n in names]
  assert [r['params'] for r in stored] == timm_params
  assert [round(p / 1e6, 1) for p in timm_params] == [2.6, 2.3]


def test_report_puts_g_ghost_next_to_its_host(tmp_path):
  """The official README's 4.0G checkpoint (15.7 M params, 78.6 top-1) against pycls's
  RegNetX-4.0GF (22.1 M params, 4.0 B flops, 21.4 % error), stored latencies reused."""
  names = ['g_ghost_regnetx_040', 'regnetx_040', 'ghostnet_050']
  (tmp_path / 'zoo.json').write_text(json.dumps(
      {'machine': 'm', 'rows': [{'name': 'regnetx_040', 'latency_ms': 40.0}]}))
  zoo.write_report(names, str(tmp_path), measure=False)
  md = (tmp_path / 'zoo.md').read_text()
  section = md[md.index('## G-Ghost networks next to their hosts'):]
  row = re.search(r'^\| `g_ghost_regnetx_040` \| `regnetx_040` \| 15\.7\d / 22\.1\d \| 2\.\d+ / '
                  r'(3\.9[5-9]|4\.0[0-4])\d* \|.* \| - / 40\.0 \| 78\.6 / 78\.6 \|$', section, re.M)
  assert row, section
  assert section.count('\n| `') == 1  # ghostnet_050 has no host


def test_reuse_latency_needs_a_previous_report(tmp_path):
  with pytest.raises(SystemExit, match='does not exist; run --report once'):
    zoo.write_report(['ghostnet_050'], str(tmp_path), reuse_latency=True)


def test_reference_sources_and_errors():
  assert reference_torch.source('ghostnet_100') == 'timm:ghostnet_100'
  assert reference_torch.source('g_ghost_regnetx_032') == 'ours:g_ghost_regnetx_032'
  assert reference_torch.source('resnet50') == 'torchvision:resnet50'


def test_benchmark_model_names_expand_patterns_and_reject_unknown():
  assert timing.model_names('ghostnet_100,repghostnet_1[03]*') == [
      'ghostnet_100', 'repghostnet_100', 'repghostnet_130']
  with pytest.raises(ValueError, match='no registered model matches'):
    timing.model_names('nothing_*')


def test_inference_benchmark_runs_the_deploy_form_in_onnxruntime_and_mnn(capsys):
  """benchmarks/inference.py --runtimes: the deploy form exported, converted, run and checked
  against JAX in both runtimes (timings kept minimal: one round of one call)."""
  import importlib.util
  import os
  path = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'benchmarks', 'inference.py')
  spec = importlib.util.spec_from_file_location('bench_inference', path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  rows = mod.main(['--models', 'ghostnet_050', '--batch', '2', '--size', '64', '--forms', 'deploy',
                   '--compare', 'none', '--runtimes', 'onnxruntime,mnn', '--min-time', '0',
                   '--repeats', '1', '--json', '', '--host-memory', 'default'])
  (row,) = rows
  assert row['onnxruntime_img_s'] > 0 and row['mnn_img_s'] > 0
  assert row['onnxruntime_max_abs_diff'] < 1e-4 and row['mnn_max_abs_diff'] < 1e-4
  assert '| mnn img/s | mnn max abs diff |' in capsys.readouterr().out
  with pytest.raises(SystemExit, match='unknown'):
    mod.main(['--models', 'ghostnet_050', '--batch', '1', '--size', '64', '--forms', 'deploy',
              '--compare', 'none', '--runtimes', 'tflite', '--json', ''])


def test_report_times_the_deploy_runtimes_beside_jax(tmp_path):
  """``--runtimes onnxruntime,mnn``: one model measured in JAX, ONNX Runtime and MNN (each
  runtime's logits checked against JAX's before timing), the columns written; the other model's
  stored latencies are reused, not re-measured."""
  (tmp_path / 'zoo.json').write_text(json.dumps(
      {'machine': 'm', 'rows': [{'name': 'repghostnet_050', 'latency_ms': 3.0,
                                 'onnxruntime_ms': 4.5, 'mnn_ms': 6.0},
                                {'name': 'resnet50', 'latency_ms': 9.0}]}))
  zoo.main(['--report', str(tmp_path), '--reuse-latency', '--pattern', '*ghostnet_050',
            '--runtimes', 'onnxruntime,mnn', '--min-time', '0.05', '--repeats', '1'])
  rows = {r['name']: r for r in json.loads((tmp_path / 'zoo.json').read_text())['rows']}
  measured = rows['ghostnet_050']
  for k in ('latency_ms', 'onnxruntime_ms', 'mnn_ms'):
    assert 0 < measured[k] < 5000, measured
  assert rows['resnet50'] == {'name': 'resnet50', 'latency_ms': 9.0}   # outside --pattern: kept
  md = (tmp_path / 'zoo.md').read_text()
  assert '| CPU latency (ms) | ONNX Runtime (ms) | MNN (ms) | top-1 (%) |' in md
  assert 'measured on:\n\n> ' in md and 'resnet50' not in md
  assert 'in ONNX Runtime and MNN' in md
  assert re.search(r'^\| `repghostnet_050` \|.*\| 3\.0 \| 4\.5 \| 6\.0 \| 66\.9 \|', md, re.M), md
  with pytest.raises(SystemExit):
    zoo.main(['--report', str(tmp_path), '--runtimes', 'tensorrt'])
