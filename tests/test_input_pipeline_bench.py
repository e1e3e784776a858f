"""The input-pipeline benchmark's plumbing, without timing a pipeline: timm's arguments for each
recipe (against the recipes' published training commands), the timed window (warm-up batches
left out), and the per-round ratios."""
import pytest

from benchmarks import input_pipeline as ip


@pytest.mark.parametrize('recipe,expect', [
    # RepGhost README / train.sh: --aa rand-m9-mstd0.5 --reprob 0.2 --remode pixel (1.3x-2.0x)
    ('repghost', dict(auto_augment='rand-m9-mstd0.5', re_prob=0.2, re_mode='pixel',
                      interpolation='bilinear', input_size=224)),
    # GhostNetV3 train.py defaults: colour jitter 0.4, no RandAugment, no erasing
    ('ghostnetv3', dict(auto_augment=None, color_jitter=(0.4, 0.4, 0.4), re_prob=0.0)),
    # S-GhostNet (MindSpore zoo): ImageNet AutoAugment policy, b1 at 240, no colour jitter
    ('s_ghostnet', dict(auto_augment='original', color_jitter=0.0, input_size=240,
                        interpolation='bicubic')),
])
def test_timm_arguments_follow_the_recipe(recipe, expect):
  config = ip.recipe_config(recipe)
  size = 240 if recipe == 's_ghostnet' else 224
  kwargs = ip.timm_kwargs(config, size)
  assert {k: kwargs[k] for k in expect} == expect
  assert kwargs['scale'] == (0.08, 1.0) and kwargs['hflip'] == 0.5 and kwargs['is_training']


def test_time_loader_leaves_out_the_warmup_and_closes():
  pulled, closed = [], []

  def make():
    def gen():
      i = 0
      while True:
        pulled.append(i)
        i += 1
        yield i
    return gen(), lambda: closed.append(True)

  img_s, cpu_per_img = ip.time_loader(make, batches=4, batch=8, warmup=3)
  assert len(pulled) == 7 and closed == [True]
  assert img_s > 0 and cpu_per_img >= 0


def test_ratios_are_per_round_then_median():
  runs = {('r', 'ours', 1): [(100., 0.010), (50., 0.020), (90., 0.011)],
          ('r', 'timm', 1): [(100., 0.010), (100., 0.010), (45., 0.022)]}
  (row,) = ip.ratios(runs)
  # per-round speed ratios 1.0, 0.5, 2.0 -> median 1.0; timm/ours CPU 1.0, 0.5, 2.0 -> 1.0
  assert row['ratio_img_s'] == pytest.approx(1.0) and row['ratio_cpu'] == pytest.approx(1.0)
  assert row['ours_img_s'] == 90. and row['timm_img_s'] == 100.
  assert row['ours_cpu_ms'] == pytest.approx(11.) and row['timm_cpu_ms'] == pytest.approx(10.)


def test_unknown_recipe_is_named():
  with pytest.raises(SystemExit):
    ip.parse_args(['--recipes', 'repghost,ghostnet_v9'])


def test_verdicts_set_the_pipeline_against_the_training_step():
  rows = [{'recipe': 'r', 'threads': 1, 'ours_img_s': 100.}]
  steps = [{'model': 'a', 'batch': 32, 'jax_img_s': 50.}, {'model': 'b', 'batch': 32, 'jax_img_s': 400.}]
  fast, slow = ip.verdicts(rows, steps)
  assert fast.endswith('feeds 2.00x -> compute-bound') and slow.endswith('feeds 0.25x -> input-bound')
