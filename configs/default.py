"""Shared base config. Family configs import it and change a few fields.

Conventions:
  * ``batch_size`` is the GLOBAL batch (all devices, all hosts).
  * ``optim.lr`` is the learning rate stated for a global batch of ``optim.lr_ref_batch`` (the
    paper's); the trainer scales it linearly to ``batch_size`` after command-line overrides,
    so ``--config.batch_size=256`` alone gives the right lr (see ``resolved_config.json``).
  * ``None`` means "from the model's registry entry" (image size, eval crop, mean/std) or "from
    the dataset" (num_classes).
"""
from __future__ import annotations

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  c = ml_collections.ConfigDict()
  c.model = 'ghostnet_100'
  c.model_kwargs = ml_collections.ConfigDict()   # extra module fields for create_model
  c.num_classes = ml_collections.config_dict.placeholder(int)
  c.dtype = 'float32'               # compute dtype: float32 | bfloat16 (params stay float32)
  c.drop_rate = ml_collections.config_dict.placeholder(float)   # None: the model's default
  c.drop_path_rate = ml_collections.config_dict.placeholder(float)
  c.seed = 0
  c.batch_size = 1024
  c.num_epochs = 300.0
  c.num_train_steps = -1            # > 0 overrides num_epochs
  c.stop_after_step = -1            # > 0: this invocation stops (and checkpoints) there; rerun resumes
  c.resume = 'auto'                 # auto: resume the workdir's run, refuse another model/config | force
  c.image_size = ml_collections.config_dict.placeholder(int)
  c.label_smoothing = 0.1
  c.loss = 'softmax_ce'             # registry in ghostnets_jax.train.step (register_loss)
  c.loss_kwargs = ml_collections.ConfigDict()   # e.g. multigrain: lam, margin, label_smoothing
  c.log_every_steps = 100
  c.on_nonfinite = 'stop'           # a NaN/Inf loss or gradient: stop (naming the step) | skip (count it)
  c.compiler_options = ml_collections.ConfigDict()   # XLA options for the jitted steps
  # Rematerialisation of the forward in the backward (less memory, more compute): 'none' or a
  # jax.checkpoint_policies name for the whole model ('dots_saveable', 'nothing_saveable', ...;
  # ghostnets_jax.train.step.REMAT_POLICIES). docs/benchmarks.md measures the trade-off.
  c.remat = 'none'
  # Host memory for XLA:CPU's per-step temporaries: 'default' leaves glibc's malloc as it is,
  # 'retain' keeps freed blocks for reuse (no page faults on fresh pages each step; measured
  # trade-off in ghostnets_jax.hostmem and docs/benchmarks.md).
  c.host_memory = 'default'

  c.data = ml_collections.ConfigDict()
  c.data.source = 'tfds'            # tfds (data.dataset) | folder (data.train_dir / eval_dir)
  c.data.dataset = 'imagenet2012'   # any TFDS image classification set (array_record)
  c.data.data_dir = ml_collections.config_dict.placeholder(str)
  c.data.manual_dir = ml_collections.config_dict.placeholder(str)
  c.data.train_split = 'train'
  c.data.eval_split = 'validation'
  c.data.sampler = 'shuffle'        # registry in ghostnets_jax.data.pipeline (register_sampler)
  c.data.sampler_kwargs = ml_collections.ConfigDict()
  c.data.threads = ml_collections.config_dict.placeholder(int)   # tf.data threads (None: all)
  c.data.prefetch = 2
  c.data.train_dir = ''             # source=folder: ImageFolder layout, one sub-folder per class
  c.data.eval_dir = ''              # (same class folders; '' = no eval set)
  c.data.on_corrupt = 'error'       # folder: an undecodable image raises naming it | 'skip' (warns)
  c.data.allow_empty_classes = False   # folder: keep class folders without images as classes

  c.aug = ml_collections.ConfigDict()
  c.aug.crop_scale = (0.08, 1.0)    # Inception random-resized crop
  c.aug.crop_ratio = (3 / 4, 4 / 3)
  c.aug.interpolation = 'bilinear'  # train resize
  c.aug.hflip = 0.5
  c.aug.auto_augment = ''           # timm --aa: 'rand-m9-mstd0.5' (RandAugment), 'original'/'v0' (AutoAugment)
  c.aug.color_jitter = ()           # timm --color-jitter: (b, c, s[, hue]); off under --aa
  c.aug.reprob = 0.0                # timm --reprob: random erasing probability (after normalisation)
  c.aug.remode = 'pixel'            # timm --remode: const | rand | pixel
  c.aug.recount = 1                 # timm --recount: at most this many boxes
  c.aug.mixup_alpha = 0.0           # timm --mixup (on device, in the step; 0 = off)
  c.aug.cutmix_alpha = 0.0          # timm --cutmix
  c.aug.mixup_prob = 1.0            # timm --mixup-prob
  c.aug.mixup_switch_prob = 0.5     # timm --mixup-switch-prob (CutMix vs Mixup when both on)
  c.aug.mixup_mode = 'batch'        # timm --mixup-mode: batch | pair | elem
  c.aug.ops = ''                    # more uint8 ops after crop/flip/auto_augment (register_op)
  c.aug.post_ops = ''               # more float ops after normalisation / erasing
  c.aug.batch_transform = ''        # another on-device transform (step.register_batch_transform)
  c.aug.batch_transform_kwargs = ml_collections.ConfigDict()
  c.aug.mean = ml_collections.config_dict.placeholder(tuple)
  c.aug.std = ml_collections.config_dict.placeholder(tuple)
  c.aug.eval_crop_pct = ml_collections.config_dict.placeholder(float)
  c.aug.eval_interpolation = ml_collections.config_dict.placeholder(str)

  c.optim = ml_collections.ConfigDict()
  c.optim.name = 'sgd'              # sgd | rmsprop_tf | adamw | lamb | psgd_kron
  c.optim.lr = 0.4
  c.optim.lr_ref_batch = 1024
  c.optim.momentum = 0.9
  c.optim.nesterov = False
  c.optim.weight_decay = 4e-5
  c.optim.wd_exclude_1d = True      # no decay on BN scale/bias and biases
  c.optim.wd_exclude_norm = False   # no decay on BN scale/bias only (MindSpore optimizers' default)
  c.optim.eps = 1e-8
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.rms_decay = 0.9
  c.optim.grad_clip_norm = 0.0      # 0: off
  c.optim.grad_accum_steps = 1
  # psgd_kron (second order, psgd-jax): preconditioner step, refit-probability anneal, max size
  # of a triangular factor (larger dimensions get a diagonal one)
  c.optim.precond_lr = 0.1
  c.optim.precond_flat_steps = 500
  c.optim.precond_decay = 0.001
  c.optim.precond_update_prob_min = 0.03
  c.optim.precond_max_size = 8192

  c.schedule = ml_collections.ConfigDict()
  c.schedule.name = 'cosine'        # cosine | step | exponential | constant | polynomial
  c.schedule.warmup_epochs = 0.0
  c.schedule.warmup_init_lr = 0.0
  c.schedule.end_lr = 0.0
  c.schedule.decay_epochs = 30.0    # step / exponential
  c.schedule.decay_rate = 0.1
  c.schedule.milestones = ()        # step: epochs at which lr *= decay_rate
  c.schedule.per_epoch = False      # hold the lr within each epoch (by_epoch schedulers)
  c.schedule.power = 1.0            # polynomial: lr = peak * (1 - epoch / end_epoch) ** power
  c.schedule.end_epoch = 0.0

  c.ema = ml_collections.ConfigDict()
  c.ema.decay = 0.0                 # 0: off; EMA covers params AND batch_stats
  c.ema.per_epoch = False           # True: ``decay`` is per epoch (per step: decay ** (1 / steps_per_epoch))

  c.distill = ml_collections.ConfigDict()
  c.distill.teacher = ''            # registry name of the teacher ('' = off)
  c.distill.torch_checkpoint = ''
  c.distill.workdir = ''            # or weights of another ghostnets_jax run
  c.distill.step = 'latest'
  c.distill.use_ema = False
  c.distill.allow_random = False    # tests only
  c.distill.alpha = 0.5
  c.distill.temperature = 1.0

  c.init = ml_collections.ConfigDict()   # fine-tuning: start from other weights
  c.init.checkpoint = ''            # .pth/.pt/.bin/.safetensors, MindSpore .ckpt, or a run's workdir
  c.init.torch_checkpoint = ''      # (older spelling for a PyTorch file)
  c.init.workdir = ''               # (older spelling for a run)
  c.init.step = 'latest'            # run: latest | best | <step>
  c.init.use_ema = False            # run: its EMA weights
  c.init.required = False           # True: refuse to start without init weights

  c.finetune = ml_collections.ConfigDict()   # ghostnets_jax/train/finetune.py
  c.finetune.freeze = 'none'        # none | trunk (everything but the classifier gets no updates)
  c.finetune.freeze_bn = ml_collections.config_dict.placeholder(bool)   # None: = (freeze == 'trunk')
  c.finetune.trunk_lr_mult = 1.0    # trunk updates x this (lr of the trunk = mult x optim.lr)
  c.finetune.reset_head = False     # True: fresh head even when num_classes matches the weights

  c.sharding = ml_collections.ConfigDict()
  c.sharding.mesh_shape = (-1, 1)   # (data, fsdp); -1 = all remaining devices
  c.sharding.axis_names = ('data', 'fsdp')
  c.sharding.fsdp_min_size = 2 ** 14
  c.sharding.bn_group_size = 0      # 0: BN statistics over the global batch; n: per n devices

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = -1     # -1: every epoch
  c.checkpoint.keep = 3
  c.checkpoint.keep_best = 1
  c.checkpoint.async_save = True

  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = -1           # -1: every epoch
  c.eval.batch_size = ml_collections.config_dict.placeholder(int)
  c.eval.image_size = ml_collections.config_dict.placeholder(int)
  c.eval.use_ema = True             # --mode=eval and keep-best use EMA weights when the run has them
  c.eval.checkpoint = 'latest'      # --mode=eval: latest | best | <step>
  c.eval.evaluators = ()            # extra evaluations (register_evaluator), e.g. retrieval
  c.eval.evaluator_kwargs = ml_collections.ConfigDict()   # {evaluator: its keyword arguments}

  c.profile = ml_collections.ConfigDict()
  c.profile.start_step = -1         # >= 0: trace num_steps steps into workdir (TensorBoard)
  c.profile.num_steps = 5

  c.distributed = ml_collections.ConfigDict()
  c.distributed.initialize = 'auto'   # 'auto' (cluster detection), 'always', 'never'
  c.distributed.coordinator_address = ml_collections.config_dict.placeholder(str)
  c.distributed.num_processes = ml_collections.config_dict.placeholder(int)
  c.distributed.process_id = ml_collections.config_dict.placeholder(int)
  c.distributed.local_device_ids = ()
  c.distributed.cpu_collectives = 'gloo'
  return c


def override(c: ml_collections.ConfigDict, fields: dict) -> ml_collections.ConfigDict:
  """Sets dotted fields (``{'optim.lr': 0.1}``), as ``--config.optim.lr=0.1`` does."""
  for key, value in fields.items():
    *path, last = key.split('.')
    node = c
    for p in path:
      node = node[p]
    node[last] = value
  return c


def select(arg: str | None, models: tuple[str, ...], default: str) -> str:
  """The variant named by ``path:variant`` (a model name or 'demo')."""
  arg = arg or default
  if arg != 'demo' and arg not in models:
    raise ValueError(f'unknown config variant {arg!r}; choose one of {("demo",) + models}')
  return arg


def demo(c: ml_collections.ConfigDict, model: str) -> ml_collections.ConfigDict:
  """Shrinks a recipe to the embedded Fashion-MNIST subset on a 2-core CPU (a few minutes)."""
  c.model = model
  c.data.dataset = 'fashion_mnist_embedded'
  c.data.eval_split = 'test'
  c.image_size = 32
  c.aug.crop_scale = (0.35, 1.0)
  c.aug.interpolation = 'bilinear'
  c.aug.eval_crop_pct = 1.0
  c.aug.eval_interpolation = 'bilinear'
  c.aug.mean = (0.286,) * 3         # Fashion-MNIST statistics
  c.aug.std = (0.353,) * 3
  c.aug.ops = c.aug.post_ops = c.aug.batch_transform = c.aug.auto_augment = ''
  c.aug.color_jitter = ()
  c.aug.reprob = c.aug.mixup_alpha = c.aug.cutmix_alpha = 0.0
  c.batch_size = 128
  c.num_epochs = 6.0
  c.drop_rate = 0.1
  c.drop_path_rate = None
  c.optim.name = 'sgd'
  c.optim.lr = 0.2
  c.optim.lr_ref_batch = 128
  c.optim.nesterov = True
  c.optim.weight_decay = 5e-5
  c.schedule.name = 'cosine'
  c.schedule.warmup_epochs = 0.5
  c.schedule.warmup_init_lr = 0.01
  c.schedule.end_lr = 0.0
  c.ema.decay, c.ema.per_epoch = 0.0, False
  c.distill.teacher = ''
  c.log_every_steps = 20
  c.checkpoint.keep = 2
  c.eval.batch_size = 500
  return c
