"""Input pipeline: TFDS record sources (`datasets`, `demo_dataset`), preprocessing ops
(`preprocess`), samplers and train/eval iterators (`pipeline`), host-side augmentation (`augment`,
TensorFlow ops for tf.data), on-device mixing (`mixup`, pure JAX) and repeated-augmentation batches
(`sampler`). Import the submodules directly; this package imports nothing, so that
`import ghostnets_jax.data.mixup` does not pull in TensorFlow."""
