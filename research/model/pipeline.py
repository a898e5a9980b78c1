"""Pipeline parallelism: the scanned layers split into stages that work on microbatches in turn.

The batch is cut into M microbatches and the L stacked layers into S stages of R chunks each
(layer l = (r S + s) L/(R S) + i is chunk r of stage s). At iteration t stage s works on virtual
microbatch v = t - s: microbatch v mod M in its chunk v div M. Stage s feeds stage s + 1 at the
next iteration; the last stage feeds stage 0 again for the next chunk (circular, R > 1; needs
M >= S) or writes the final output (GPipe, R = 1). R M + S - 1 iterations run, so each stage idles
S - 1 of them: the bubble, (S - 1) / (R M + S - 1).

All stages run as one vmap over a leading stage axis, sharded like the stacked layers (logical
'layers', mapped to the mesh axis 'stage'), so each device computes its own stage and the hand-off
between stages is a shift along that axis (a collective permute). Parameters keep the layout of a
scanned model ([L, ...]), so a checkpoint moves between pipelined and unpipelined meshes. GPipe's
stages are contiguous blocks of layers, which the 'layers' sharding already puts on their
devices; circular ones are not, and their params move to their stages once per step.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

SCHEDULES = ('gpipe', 'circular')
STAGE_AXIS = 'layers'  # the logical axis the stage dimension is sharded by


@dataclasses.dataclass(frozen=True)
class Schedule:
  """S stages, M microbatches, R chunks of layers per stage (R = 1: GPipe; R > 1: circular)."""
  num_stages: int  # S
  num_microbatches: int  # M
  num_repeats: int = 1  # R

  @property
  def num_iterations(self) -> int:
    return self.num_repeats * self.num_microbatches + self.num_stages - 1

  def active(self, t: int, stage: int) -> bool:
    """Whether `stage` works on a real microbatch at iteration `t` (not in the bubble)."""
    return 0 <= t - stage < self.num_repeats * self.num_microbatches


def bubble_fraction(schedule: Schedule) -> float:
  """The share of (stage, iteration) slots of the schedule spent idle, counted slot by slot."""
  slots = [(t, s) for t in range(schedule.num_iterations) for s in range(schedule.num_stages)]
  return sum(not schedule.active(t, s) for t, s in slots) / len(slots)


def theoretical_bubble(schedule: Schedule) -> float:
  """(S - 1) / (R M + S - 1)."""
  s, m, r = schedule.num_stages, schedule.num_microbatches, schedule.num_repeats
  return (s - 1) / (r * m + s - 1)


def _stage_mesh_axes():
  """The mesh axes of the stage dimension under the current mesh and rules; None outside them."""
  if jax.sharding.get_abstract_mesh().empty or not nn.get_logical_axis_rules():
    return None
  return nn.logical_to_mesh_axes((STAGE_AXIS,))[0]


def _constrain_stage_axis(tree):
  """Shard the leading (stage) axis of every leaf over the stage's mesh axes."""
  stage = _stage_mesh_axes()
  if stage is None:
    return tree
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(
      x, P(stage, *[P.UNCONSTRAINED] * (x.ndim - 1))), tree)


def _microbatches(x_B_, m: int):
  """[B, ...] -> [M, B/M, ...]; microbatch m holds rows m, M + m, 2M + m, ... so each keeps its
  share of every data-parallel shard."""
  return jnp.swapaxes(x_B_.reshape(x_B_.shape[0] // m, m, *x_B_.shape[1:]), 0, 1)


def _unmicrobatch(x_MxB_):
  return jnp.swapaxes(x_MxB_, 0, 1).reshape(-1, *x_MxB_.shape[2:])


def run(schedule: Schedule, layer_fn, stacked_params, x_BxTxD, positions_BxT):
  """The layers `layer_fn(params_of_one_layer, x, positions) -> x` over `stacked_params`
  (leaves [L, ...]) applied to x [B, T, D] in the order of the stack, by the pipeline schedule."""
  s, m, r = schedule.num_stages, schedule.num_microbatches, schedule.num_repeats
  num_layers = jax.tree.leaves(stacked_params)[0].shape[0]
  per_chunk = num_layers // (s * r)
  # [L, ...] -> [S, R, L/(R S), ...]: layer (r S + s) L/(R S) + i at [s, r, i].
  params_SxR = jax.tree.map(lambda w: jnp.swapaxes(
      w.reshape(r, s, per_chunk, *w.shape[1:]), 0, 1), stacked_params)
  params_SxR = _constrain_stage_axis(params_SxR)
  x_MxBxTxD = _microbatches(x_BxTxD, m)
  positions_MxBxT = _microbatches(positions_BxT, m)
  stages_S = jnp.arange(s)
  # Constraints inside a stage (the blocks' logical ones) keep the stage axis on its mesh axes.
  over_stages = lambda f: jax.vmap(f, spmd_axis_name=_stage_mesh_axes())

  def chunk(params, x_BxTxD, positions_BxT):
    """One stage's chunk: its L/(R S) layers in turn."""
    def one_layer(x_BxTxD, layer_params):
      return layer_fn(layer_params, x_BxTxD, positions_BxT), None
    return jax.lax.scan(one_layer, x_BxTxD, params)[0]

  def iteration(carry, t):
    state_SxBxTxD, loop_MxBxTxD, out_MxBxTxD = carry
    virtual_S = t - stages_S
    micro_S = jnp.mod(virtual_S, m)
    repeat_S = jnp.clip(virtual_S // m, 0, r - 1)
    # Stage 0 takes a fresh microbatch for the first M iterations, then the last stage's output
    # of M iterations ago (the same microbatch, one chunk on; there since M >= S).
    first = jnp.where(t < m, x_MxBxTxD[jnp.minimum(t, m - 1)], loop_MxBxTxD[jnp.mod(t, m)])
    inputs_SxBxTxD = jnp.roll(state_SxBxTxD, 1, axis=0).at[0].set(first)
    inputs_SxBxTxD = _constrain_stage_axis(inputs_SxBxTxD)
    chunk_params = over_stages(lambda p, i: jax.tree.map(lambda w: w[i], p))(params_SxR,
                                                                             repeat_S)
    outputs_SxBxTxD = over_stages(chunk)(chunk_params, inputs_SxBxTxD, positions_MxBxT[micro_S])
    outputs_SxBxTxD = _constrain_stage_axis(outputs_SxBxTxD)
    # The last stage finished virtual microbatch t - (S - 1): a final output, or the next
    # chunk's input for stage 0.
    done = t - (s - 1)
    slot = jnp.mod(done, m)
    finished = (done >= 0) & (done < r * m)
    last_BxTxD = outputs_SxBxTxD[-1]
    is_final = finished & (done // m == r - 1)
    out_MxBxTxD = out_MxBxTxD.at[slot].set(jnp.where(is_final, last_BxTxD, out_MxBxTxD[slot]))
    loops = finished & ~is_final
    loop_MxBxTxD = loop_MxBxTxD.at[slot].set(jnp.where(loops, last_BxTxD, loop_MxBxTxD[slot]))
    return (outputs_SxBxTxD, loop_MxBxTxD, out_MxBxTxD), None

  state_SxBxTxD = jnp.zeros((s, *x_MxBxTxD.shape[1:]), x_BxTxD.dtype)
  carry = (_constrain_stage_axis(state_SxBxTxD), jnp.zeros_like(x_MxBxTxD),
           jnp.zeros_like(x_MxBxTxD))
  (_, _, out_MxBxTxD), _ = jax.lax.scan(iteration, carry, jnp.arange(schedule.num_iterations))
  return _unmicrobatch(out_MxBxTxD)
