"""Input-pipeline pieces: host-side augmentation (`augment`, TensorFlow ops for tf.data), on-device
mixing (`mixup`, pure JAX) and repeated-augmentation batches (`sampler`). Import the submodules
directly; this package imports nothing, so that `import ghostnets_jax.data.mixup` does not pull in
TensorFlow."""
