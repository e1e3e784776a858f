"""Fine-tune a pretrained model on your own images (ImageFolder layout: one sub-folder per class).

The same run as the command line (``configs/finetune.py``)::

  python main.py --config=configs/finetune.py:ghostnet_100 --workdir=/tmp/ft_pets \
      --config.init.checkpoint=ghostnet_1x.pth \
      --config.data.source=folder --config.data.train_dir=pets/train --config.data.eval_dir=pets/val

  python examples/finetune_folder.py --model ghostnet_100 --checkpoint ghostnet_1x.pth \
      --train-dir pets/train --eval-dir pets/val --workdir /tmp/ft_pets [--freeze trunk] [--epochs 5]

No images at hand? ``--write-demo-folder shoes`` writes three Fashion-MNIST classes of the embedded
data (sandal, sneaker, ankle boot) as PNG files in that layout; fine-tune the ``make demo`` run
(10 classes) on them with ``--model demo --checkpoint workdir_demo --train-dir shoes/train
--eval-dir shoes/val``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEMO_CLASSES = ('sandal', 'sneaker', 'ankle_boot')


def write_demo_folder(root: str, per_class: int = 100, eval_per_class: int = 20,
                      classes: tuple[str, ...] = DEMO_CLASSES) -> tuple[str, str]:
  """Writes ``root/train/<class>/*.png`` and ``root/val/<class>/*.png`` from the embedded
  Fashion-MNIST subset; returns the two folders."""
  import numpy as np
  from PIL import Image
  from ghostnets_jax.data.demo_dataset import CLASS_NAMES, load_arrays
  arrays = load_arrays()
  for split, key, n in (('train', 'train', per_class), ('val', 'test', eval_per_class)):
    images, labels = arrays[f'{key}_images'], arrays[f'{key}_labels']
    for name in classes:
      folder = os.path.join(root, split, name)
      os.makedirs(folder, exist_ok=True)
      for i in np.flatnonzero(labels == CLASS_NAMES.index(name))[:n]:
        Image.fromarray(images[i]).save(os.path.join(folder, f'{i:05d}.png'))
  return os.path.join(root, 'train'), os.path.join(root, 'val')


def folder_config(model: str, checkpoint: str, train_dir: str, eval_dir: Optional[str] = None,
                  **overrides: Any):
  """``configs/finetune.py:<model>`` (or ``demo``) reading ``train_dir`` / ``eval_dir``;
  ``overrides``: dotted config fields (``{'finetune.freeze': 'trunk'}``)."""
  from configs import default, finetune
  c = finetune.get_config(model)
  c.init.checkpoint = checkpoint
  c.data.source, c.data.train_dir, c.data.eval_dir = 'folder', train_dir, eval_dir or ''
  return default.override(c, overrides)


def main(argv: Optional[list[str]] = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--write-demo-folder', metavar='ROOT', help='write the demo folder and exit')
  p.add_argument('--per-class', type=int, default=100, help='demo folder: train images per class')
  p.add_argument('--model', default='demo', help="registry name, or 'demo' (the make-demo model)")
  p.add_argument('--checkpoint', help='.pth/.pt/.bin/.safetensors, MindSpore .ckpt or a run workdir')
  p.add_argument('--train-dir')
  p.add_argument('--eval-dir', help='same class folders as --train-dir; omitted: no evaluation')
  p.add_argument('--workdir', default='workdir_finetune')
  p.add_argument('--freeze', choices=('none', 'trunk'), default='none')
  p.add_argument('--epochs', type=float, default=None)
  p.add_argument('--batch-size', type=int, default=None)
  args = p.parse_args(argv)
  if args.write_demo_folder:
    train, val = write_demo_folder(args.write_demo_folder, args.per_class)
    print(f'wrote {train} and {val}')
    return {}
  if not (args.checkpoint and args.train_dir):
    p.error('--checkpoint and --train-dir are required (or --write-demo-folder ROOT)')
  overrides = {'finetune.freeze': args.freeze}
  if args.epochs:
    overrides['num_epochs'] = args.epochs
  if args.batch_size:
    overrides['batch_size'] = args.batch_size
  c = folder_config(args.model, args.checkpoint, args.train_dir, args.eval_dir, **overrides)
  from ghostnets_jax.train import trainer
  metrics = trainer.train_and_evaluate(c, args.workdir,
                                       'train_and_eval' if args.eval_dir else 'train')
  print(f'{args.workdir}: ' + '  '.join(f'{k} {v:.4f}' if isinstance(v, float) else f'{k} {v}'
                                        for k, v in metrics.items()))
  return metrics


if __name__ == '__main__':
  main()
