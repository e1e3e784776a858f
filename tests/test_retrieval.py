"""Retrieval metrics on hand-made embeddings with answers worked out by hand."""
import numpy as np
import pytest

from ghostnets_jax.metrics.retrieval import (class_retrieval, copy_detection, fit_pca_whitening, l2n,
                                              retrieval_metrics, retrieval_report)


def on_circle(degrees):
  """2-d unit vectors: cosine similarity is cos(angle difference), so rankings follow angles."""
  r = np.deg2rad(np.asarray(degrees, np.float64))
  return np.stack([np.cos(r), np.sin(r)], axis=1)


def test_class_retrieval_by_hand():
  # A 0 deg (class 0), B 10 (1), C 30 (0), D 100 (1). Rankings by angle difference:
  # A: B C D -> relevant C at rank 2: AP 1/2;  B: A C D -> D at 3: AP 1/3
  # C: B A D -> A at 2: AP 1/2;                D: C B A -> B at 2: AP 1/2
  res = class_retrieval(on_circle([0, 10, 30, 100]), np.array([0, 1, 0, 1]))
  assert res['mAP'] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2 + 1 / 2) / 4)
  assert res['recall@1'] == 0.0 and res['queries'] == 4
  # now E at 5 deg, class 1: A ranks E B C -> C at 3 (AP 1/3); B ranks E A C D -> E, D at 1, 4:
  # AP (1 + 2/4) / 2; C: B E A D -> A at 3: 1/3; D: C B E A -> B at 2, E at 3: (1/2 + 2/3) / 2;
  # E: A B C D -> B at 2, D at 4: (1/2 + 2/4) / 2
  res = class_retrieval(on_circle([0, 10, 30, 100, 5]), np.array([0, 1, 0, 1, 1]))
  aps = [1 / 3, (1 + 2 / 4) / 2, 1 / 3, (1 / 2 + 2 / 3) / 2, (1 / 2 + 2 / 4) / 2]
  assert res['mAP'] == pytest.approx(np.mean(aps))
  assert res['recall@1'] == pytest.approx(1 / 5)


def test_average_precision_of_a_known_ranking_and_chunking():
  # gallery at 10..50 deg from the query, relevant at ranks 1, 3, 5: AP = (1 + 2/3 + 3/5) / 3
  gallery = on_circle([50, 10, 40, 20, 30])   # stored out of order: the ranking does the work
  labels = np.array([7, 7, 1, 1, 7])           # by angle: 10(7) 20(1) 30(7) 40(1) 50(7)
  res = retrieval_metrics(on_circle([0]), gallery, np.array([7]), labels)
  assert res['mAP'] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3) and res['recall@1'] == 1.0
  rng = np.random.RandomState(0)
  emb, lab = rng.randn(50, 8), rng.randint(0, 5, 50)
  assert class_retrieval(emb, lab, chunk=7) == pytest.approx(class_retrieval(emb, lab, chunk=1000))


def test_copy_detection_by_hand():
  originals = on_circle([0, 40, 80, 120])
  # copies 5 deg off their source, except the copy of #1 drawn to 62 deg (nearer #2 = 80 deg)
  copies = on_circle([5, 62, 85, 125])
  res = copy_detection(copies, originals, np.array([0, 1, 2, 3]))
  assert res['mAP'] == pytest.approx((1 + 1 / 2 + 1 + 1) / 4) and res['recall@1'] == 0.75


def test_queries_without_relevant_items_are_skipped_and_bad_shapes_rejected():
  res = retrieval_metrics(on_circle([0, 90]), on_circle([10, 20]), np.array([1, 9]), np.array([1, 2]))
  assert res['queries'] == 1 and res['mAP'] == 1.0
  with pytest.raises(ValueError, match='no query has a relevant'):
    retrieval_metrics(on_circle([0]), on_circle([10]), np.array([1]), np.array([2]))
  with pytest.raises(ValueError, match='shapes do not match'):
    retrieval_metrics(on_circle([0]), np.zeros((2, 3)), np.array([1]), np.array([1, 2]))


def test_pca_whitening_gives_identity_covariance_and_feeds_the_report():
  rng = np.random.RandomState(0)
  train = rng.randn(500, 6) @ np.diag([5.0, 3.0, 1.0, 0.5, 0.2, 0.1]) + 4.0
  w = fit_pca_whitening(train)
  z = (l2n(train) - w.mean) @ w.projection
  np.testing.assert_allclose(z.mean(0), 0, atol=1e-9)
  np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(6), atol=1e-6)
  assert fit_pca_whitening(train, dim=3).projection.shape == (6, 3)
  with pytest.raises(ValueError, match='dim=7'):
    fit_pca_whitening(train, dim=7)
  evals, labels = rng.randn(40, 6), rng.randint(0, 4, 40)
  copies, src = evals[:10] + 0.01 * rng.randn(10, 6), np.arange(10)
  report = retrieval_report(evals, labels, copies, src, train_embeddings=train)
  assert report['class/mAP'] == pytest.approx(class_retrieval(w(evals), labels)['mAP'])
  assert report['copy/recall@1'] == 1.0 and set(report) >= {'class/recall@1', 'copy/mAP'}
  plain = retrieval_report(evals, labels)
  assert plain['class/mAP'] == pytest.approx(class_retrieval(evals, labels)['mAP'])


def test_the_retrieval_evaluator_of_a_run_embeds_the_split_in_order():
  """``config.eval.evaluators = ('retrieval',)`` on MultiGrain's demo: the embeddings come back
  in the split's order (their labels are the records' labels, read directly), the copy
  augmentation is the config's, and the report is the metrics of those embeddings."""
  import tempfile
  from configs import multigrain
  from ghostnets_jax.errors import ConfigError
  from ghostnets_jax.train import experiment
  from tests.train_helpers import FAST_COMPILE, embedded_data_dir
  c = multigrain.get_config('demo')
  c.data.data_dir, c.eval.batch_size, c.compiler_options = embedded_data_dir(), 500, FAST_COMPILE
  with tempfile.TemporaryDirectory() as workdir:
    exp = experiment.build(c, workdir, train=False)
    exp.checkpointer.close()
    evaluator = exp.evaluators['retrieval']
    assert 'rand-m9-mstd0.5' in evaluator.copy_spec and 'flip' in evaluator.copy_spec
    variables = exp.init_state().variables()
    emb, labels = evaluator.embed_split(variables, exp.resolved.eval_preprocess)
    src = exp.eval_source
    want = [src.features.deserialize_example_np(r)['label'] for r in src.fetch(range(len(src)))]
    np.testing.assert_array_equal(labels, want)
    assert emb.shape[0] == len(src) == 2000
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)   # L2-normalised
    report = evaluator(variables)
    assert report['retrieval/class/mAP'] == pytest.approx(class_retrieval(emb, labels)['mAP'],
                                                         abs=1e-5)
    c.eval.evaluator_kwargs = {}
    with pytest.raises(ConfigError, match='evaluator_kwargs.retrieval.copy_augment'):
      experiment.build(c, workdir, train=False)
