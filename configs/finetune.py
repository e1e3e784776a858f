"""Fine-tuning a pretrained model on a new dataset: ``configs/finetune.py:<model>`` (any registry
name; default ghostnet_100) or ``configs/finetune.py:demo``.

  python main.py --config=configs/finetune.py:ghostnet_100 --workdir=/tmp/ft \
      --config.init.checkpoint=ghostnet_1x.pth \
      --config.data.source=folder --config.data.train_dir=pets/train --config.data.eval_dir=pets/val

Starting weights (required): ``init.checkpoint`` = a PyTorch ``.pth``/``.pt``/``.bin``/
``.safetensors`` file, a MindSpore ``.ckpt`` or a ghostnets_jax run (workdir, ``checkpoints``
directory or step directory; ``init.step``, ``init.use_ema``). The head is always re-initialised
for the new ``num_classes`` (from the data unless set). Data: any TFDS dataset by name
(``data.dataset``, ``data.train_split``, ``data.eval_split``) or an image folder
(``data.source=folder``, ``data.train_dir``, ``data.eval_dir``: one sub-folder per class).

Recipe (a starting point for a few thousand to a few hundred thousand images, not a paper's):
Nesterov SGD momentum 0.9, head lr 0.05 per 256 images with the trunk at ``trunk_lr_mult`` 0.1 of
it, 1 warmup epoch then cosine over 20 epochs, weight decay 4e-5 (not on BN/biases), label
smoothing 0.1, Inception crop (area 0.25-1) and flip, no EMA. ``finetune.freeze='trunk'`` trains
the head alone (a linear probe; BN statistics then stay frozen too, ``finetune.freeze_bn``).
"""
from __future__ import annotations

from configs import default
from ghostnets_jax import list_models

MODELS = tuple(list_models())   # any registered model


def get_config(arg: str | None = None):
  variant = default.select(arg, MODELS, 'ghostnet_100')
  c = default.get_config()
  c.model = variant
  c.init.required = True
  c.finetune.reset_head = True
  c.finetune.freeze = 'none'
  c.finetune.trunk_lr_mult = 0.1
  c.data.dataset = ''               # a TFDS name, or data.source='folder'
  c.data.eval_split = 'validation'
  c.batch_size = 256
  c.num_epochs = 20.0
  c.optim.name = 'sgd'
  c.optim.lr, c.optim.lr_ref_batch = 0.05, 256
  c.optim.momentum = 0.9
  c.optim.nesterov = True
  c.optim.weight_decay = 4e-5
  c.schedule.name = 'cosine'
  c.schedule.warmup_epochs = 1.0
  c.schedule.warmup_init_lr = 0.0
  c.label_smoothing = 0.1
  c.aug.crop_scale = (0.25, 1.0)
  c.checkpoint.keep = 2
  if variant == 'demo':
    return demo(c)
  return c


def demo(c):
  """The model of ``make demo`` (``configs/g_ghost_regnet.py:demo``) fine-tuned from that run
  (``--config.init.checkpoint=workdir_demo``) on the embedded Fashion-MNIST subset: a fresh
  10-class head, the trunk at 0.1x the lr, 1 epoch at 32 px."""
  from configs.g_ghost_regnet import DEMO_MODEL_KWARGS
  c = default.demo(c, 'g_ghost_regnetx_032')
  c.model_kwargs.update(DEMO_MODEL_KWARGS)
  c.drop_rate = 0.0
  c.num_epochs = 1.0
  c.optim.lr = 0.1
  c.schedule.warmup_epochs = 0.1
  return c
