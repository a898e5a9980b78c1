"""The train state: a plain pytree of step, float32 params and optimizer state."""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from research.model.init import abstract_params, init_params
from research.parallel import sharding as sharding_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimizer updates applied so far
  params: dict
  opt_state: optax.OptState


def init_state(model_config, optimizer, seed: int) -> TrainState:
  """Fresh params from `seed` (unboxed: logical names live in the model, not in the state)."""
  params = init_params(model_config, seed)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params))


def state_shardings(model_config, optimizer, mesh, rules) -> TrainState:
  """The train state's shardings, from the logical axis names of the model's params."""
  return state_shardings_of(abstract_params(model_config, boxed=True), optimizer, mesh, rules)


def state_shardings_of(boxed_params, optimizer, mesh, rules) -> TrainState:
  """The shardings of a train state over any params tree whose leaves carry logical axis names
  (the model's, or a model with extra heads)."""
  params = sharding_lib.logical_shardings(boxed_params, mesh, rules)
  shapes = jax.tree.map(lambda box: box.unbox(apply_constraint=False), boxed_params,
                        is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  opt_state = sharding_lib.optimizer_state_shardings(optimizer, shapes, params, mesh)
  return TrainState(step=sharding_lib.replicated(mesh), params=params, opt_state=opt_state)
