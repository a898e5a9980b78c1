"""The compiled pieces of a run on its mesh: state init, train step and eval step, with shardings.

Training, the compile report and the benchmark all build them here, so they measure and run the
same program.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh, NamedSharding

from research.parallel import sharding as sharding_lib
from research.train.optimizer import make_optimizer
from research.train.pipelining import pipeline_schedule
from research.train.state import TrainState, init_state, state_shardings
from research.train.step import make_eval_step, make_train_step


@dataclasses.dataclass(frozen=True)
class Program:
  optimizer: object
  state_shardings: TrainState
  batch_sharding: NamedSharding
  init_state: object  # () -> sharded TrainState
  train_step: object  # (state, global batch) -> (state, metrics); the state is donated
  eval_step: object  # (params, global batch) -> summed nats

  def abstract_state(self) -> TrainState:
    """The state's shapes, dtypes and shardings, without allocating it."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        jax.eval_shape(self.init_state), self.state_shardings)

  def abstract_batch(self, batch_size: int, seq_len: int) -> dict:
    tokens = jax.ShapeDtypeStruct((batch_size, seq_len), jnp.int32, sharding=self.batch_sharding)
    return {'inputs': tokens, 'targets': tokens}


def build_program(config: ml_collections.ConfigDict, mesh: Mesh, rules) -> Program:
  """Jitted functions with in/out shardings from the logical rules; call them inside the mesh."""
  m, t = config.model, config.train
  optimizer = make_optimizer(t, m)
  shardings = state_shardings(m, optimizer, mesh, rules)
  batch_sharding = sharding_lib.batch_sharding(mesh, rules)
  pipeline = pipeline_schedule(t, mesh.shape['stage'])
  return Program(
      optimizer=optimizer,
      state_shardings=shardings,
      batch_sharding=batch_sharding,
      init_state=jax.jit(lambda: init_state(m, optimizer, t.seed), out_shardings=shardings),
      train_step=jax.jit(make_train_step(m, optimizer, t.z_loss, t.grad_accum_steps,
                                         t.loss_chunk_len, t.get('mtp_loss_weight', 1.0),
                                         pipeline),
                         in_shardings=(shardings, batch_sharding),
                         out_shardings=(shardings, None), donate_argnums=0),
      eval_step=jax.jit(make_eval_step(m, pipeline),
                        in_shardings=(shardings.params, batch_sharding)),
  )
