"""The train state: a plain pytree of step, float32 params and optimizer state."""

from __future__ import annotations

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
  params = sharding_lib.logical_shardings(abstract_params(model_config, boxed=True), mesh, rules)
  opt_state = sharding_lib.optimizer_state_shardings(optimizer, abstract_params(model_config),
                                                     params, mesh)
  return TrainState(step=sharding_lib.replicated(mesh), params=params, opt_state=opt_state)
