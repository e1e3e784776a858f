"""Train state (params, BN statistics, optimizer state, EMA), its sharded creation, and
initialisation from a PyTorch checkpoint or another run (head re-initialised when it differs)."""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.traverse_util import flatten_dict, unflatten_dict
from jax.sharding import Mesh

from ghostnets_jax.initialize import one_off_compile_options
from ghostnets_jax.train import mesh as mesh_lib

# Re-initialised when initialising from other weights: classifier heads, and the loss's own
# parameters (``step.LOSS_KEY``; a run of another loss has none).
HEAD_NAMES = ('classifier', 'fc', 'head', '_loss')
LossInit = Optional[Callable[[], dict]]


@flax.struct.dataclass
class TrainState:
  """Everything a step changes. ``ema`` is ``{'params', 'batch_stats'}`` or ``{}`` (EMA off)."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema: Any

  def variables(self, use_ema: bool = False) -> dict:
    """The model's ``{'params', 'batch_stats'}`` (the loss's own parameters left out)."""
    src = self.ema if use_ema and self.ema else {'params': self.params,
                                                  'batch_stats': self.batch_stats}
    params = {k: v for k, v in src['params'].items() if k != '_loss'}
    return {'params': params, 'batch_stats': src['batch_stats']}


def init_fn(model: nn.Module, tx: optax.GradientTransformation, image_size: int,
            use_ema: bool, loss_init: LossInit = None) -> Callable[[jax.Array], TrainState]:
  def init(rng: jax.Array) -> TrainState:
    x = jnp.zeros((1, image_size, image_size, model.in_chans if hasattr(model, 'in_chans') else 3))
    variables = model.init(rng, x, train=False)
    params, stats = variables['params'], variables.get('batch_stats', {})
    if loss_init is not None:
      params = {**params, '_loss': loss_init()}
    ema = {'params': params, 'batch_stats': stats} if use_ema else {}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                      opt_state=tx.init(params), ema=ema)
  return init


def abstract_state(model: nn.Module, tx: optax.GradientTransformation, image_size: int,
                   use_ema: bool, loss_init: LossInit = None) -> TrainState:
  return jax.eval_shape(init_fn(model, tx, image_size, use_ema, loss_init), jax.random.key(0))


def state_shardings(mesh: Mesh, abstract: TrainState, fsdp_min_size: int) -> TrainState:
  return mesh_lib.tree_shardings(mesh, abstract, fsdp_min_size)


def create_state(model: nn.Module, tx: optax.GradientTransformation, image_size: int, *,
                 use_ema: bool, rng: jax.Array, shardings: TrainState,
                 loss_init: LossInit = None) -> TrainState:
  """A freshly initialised state, created directly with its shardings."""
  fn = jax.jit(init_fn(model, tx, image_size, use_ema, loss_init), out_shardings=shardings)
  return fn.lower(rng).compile(compiler_options=one_off_compile_options())(rng)


def is_head(path: tuple[str, ...]) -> bool:
  return any(p in HEAD_NAMES for p in path)


def merge_pretrained(fresh: dict, loaded: dict, *, what: str = 'checkpoint'
                     ) -> tuple[dict, list[str]]:
  """``fresh`` variables with every leaf taken from ``loaded`` where path and shape match.

  Head leaves (under ``classifier`` / ``fc`` / ``head``) that are missing or differ in shape
  (another ``num_classes``) keep their fresh initialisation; any other mismatch raises.
  Returns the merged tree and the list of re-initialised paths.
  """
  f, l = flatten_dict(fresh, sep='/'), flatten_dict(loaded, sep='/')
  out, reinit, bad = {}, [], []
  for k, v in f.items():
    src = l.get(k)
    if src is not None and tuple(np.shape(src)) == tuple(v.shape):
      out[k] = np.asarray(src, dtype=v.dtype)
    elif is_head(tuple(k.split('/'))):
      out[k] = v
      reinit.append(k)
    else:
      bad.append(f'{k}: model {tuple(v.shape)}, {what} '
                 f'{"missing" if src is None else tuple(np.shape(src))}')
  extra = [k for k in l if k not in f and not is_head(tuple(k.split('/')))]
  if bad or extra:
    raise ValueError(f'the {what} does not fit the model: ' + '; '.join(
        bad[:10] + [f'unexpected {k}' for k in extra[:10]]))
  return unflatten_dict(out, sep='/'), reinit


def without_head(variables: dict) -> dict:
  """``variables`` less every head leaf (see :data:`HEAD_NAMES`)."""
  flat = flatten_dict(variables, sep='/')
  return unflatten_dict({k: v for k, v in flat.items() if not is_head(tuple(k.split('/')))}, sep='/')


def load_pretrained(state: TrainState, loaded: dict, shardings: TrainState, *, what: str,
                    reset_head: bool = False) -> TrainState:
  """Replaces params/batch_stats (and EMA) of ``state`` by ``loaded`` ``{'params', 'batch_stats'}``;
  with ``reset_head`` the head keeps its fresh initialisation even where its shape fits."""
  fresh = jax.device_get({'params': state.params, 'batch_stats': state.batch_stats})
  loaded = {'params': {k: v for k, v in loaded['params'].items() if k != '_loss'},
            'batch_stats': loaded.get('batch_stats', {})}
  merged, reinit = merge_pretrained(fresh, without_head(loaded) if reset_head else loaded, what=what)
  if reinit:
    logging.info('initialised from %s; re-initialised head: %s', what, ', '.join(reinit))
  params = jax.device_put(merged['params'], shardings.params)
  stats = jax.device_put(merged['batch_stats'], shardings.batch_stats)
  ema = ({'params': jax.device_put(merged['params'], shardings.ema['params']),
          'batch_stats': jax.device_put(merged['batch_stats'], shardings.ema['batch_stats'])}
         if state.ema else {})
  return state.replace(params=params, batch_stats=stats, ema=ema)
