"""The train state of each stage: which params it holds, their shardings, its optimizer.

sft, dpo and grpo train the language model's params; reward trains {'backbone', 'head'} (a scalar
head in place of the output layer); ppo trains {'policy', 'value'}, the policy and a value model
(the policy's backbone, a scalar head starting at zero) side by side.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.model import init as model_init
from research.posttrain import reward_model
from research.posttrain.config import RL_STAGES
from research.train.optimizer import make_optimizer
from research.train.schedules import make_schedule
from research.train.state import TrainState, state_shardings_of


def updates_per_step(config: ml_collections.ConfigDict) -> int:
  """Optimizer updates in one step of the run: ppo_epochs x num_minibatches for PPO and GRPO."""
  p = config.posttrain
  return p.ppo_epochs * p.num_minibatches if p.stage in RL_STAGES else 1


def optimizer_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config.train` with num_steps and warmup_steps counted in optimizer updates."""
  t = ml_collections.ConfigDict(config.train.to_dict())
  t.num_steps *= updates_per_step(config)
  t.warmup_steps *= updates_per_step(config)
  return t


def optimizer_and_schedule(config: ml_collections.ConfigDict):
  """AdamW with clipping on the run's schedule (`research.train.optimizer`), and the schedule."""
  t = optimizer_config(config)
  return make_optimizer(t), make_schedule(t)


def boxed_abstract_params(stage: str, model_config: ml_collections.ConfigDict):
  """The stage's params as ShapeDtypeStructs with their logical axis names."""
  policy = model_init.abstract_params(model_config, boxed=True)
  if stage == 'reward':
    return reward_model.abstract_params(model_config, boxed=True)
  if stage == 'ppo':
    return {'policy': policy, 'value': reward_model.abstract_params(model_config, boxed=True)}
  return policy


def initial_params(stage: str, model_config: ml_collections.ConfigDict, policy_params, seed: int):
  """The stage's params at step 0 from the language model it starts from."""
  if stage == 'reward':
    return {'backbone': policy_params, 'head': reward_model.init_head(model_config, seed)}
  if stage == 'ppo':
    zero_head = jax.tree.map(np.zeros_like, reward_model.init_head(model_config, seed))
    return {'policy': policy_params, 'value': {'backbone': policy_params, 'head': zero_head}}
  return policy_params


def state_shardings_for(stage: str, model_config, optimizer, mesh, rules) -> TrainState:
  """The shardings of the stage's train state, from the logical axis names of its params."""
  return state_shardings_of(boxed_abstract_params(stage, model_config), optimizer, mesh, rules)


def make_state(params, optimizer, shardings: TrainState) -> TrainState:
  """The sharded TrainState at step 0 holding `params` (host or device arrays)."""
  params = jax.device_put(jax.tree.map(lambda x: np.asarray(x, np.float32), params),
                          shardings.params)
  init = jax.jit(lambda p: TrainState(step=jnp.zeros((), jnp.int32), params=p,
                                      opt_state=optimizer.init(p)),
                 out_shardings=shardings)
  return init(params)
