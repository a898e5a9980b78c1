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

A layer may also return per-layer values (`with_aux=True`: `layer_fn -> (x, aux)`, e.g. the
figures MoE layers sow): each (iteration, stage) slot in the bubble computes on garbage, so only
active slots count, and each layer's value is the mean over the M microbatches, stacked [L, ...]
like the params.
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


def _to_stages(w_L_, s: int, r: int):
  """[L, ...] -> [S, R, L/(R S), ...]: layer (r S + s) L/(R S) + i at [s, r, i]."""
  return jnp.swapaxes(w_L_.reshape(r, s, w_L_.shape[0] // (s * r), *w_L_.shape[1:]), 0, 1)


def _from_stages(w_SxRxC_):
  """The inverse of `_to_stages`: [S, R, C, ...] -> [L, ...] in the order of the stack."""
  return jnp.swapaxes(w_SxRxC_, 0, 1).reshape(-1, *w_SxRxC_.shape[3:])


def run(schedule: Schedule, layer_fn, stacked_params, x_BxTxD, positions_BxT,
        with_aux: bool = False):
  """The layers `layer_fn(params_of_one_layer, x, positions) -> x` over `stacked_params`
  (leaves [L, ...]) applied to x [B, T, D] in the order of the stack, by the pipeline schedule.

  With `with_aux`, `layer_fn` returns `(x, aux)` and the result is `(x, aux_L)`: each layer's aux
  leaves averaged over the microbatches (bubble slots left out), stacked [L, ...].
  """
  s, m, r = schedule.num_stages, schedule.num_microbatches, schedule.num_repeats
  params_SxR = _constrain_stage_axis(jax.tree.map(lambda w: _to_stages(w, s, r),
                                                  stacked_params))
  x_MxBxTxD = _microbatches(x_BxTxD, m)
  positions_MxBxT = _microbatches(positions_BxT, m)
  stages_S = jnp.arange(s)
  # Constraints inside a stage (the blocks' logical ones) keep the stage axis on its mesh axes.
  over_stages = lambda f: jax.vmap(f, spmd_axis_name=_stage_mesh_axes())

  def chunk(params, x_BxTxD, positions_BxT):
    """One stage's chunk: its L/(R S) layers in turn; (x, aux of each layer [C, ...])."""
    def one_layer(x_BxTxD, layer_params):
      out = layer_fn(layer_params, x_BxTxD, positions_BxT)
      return out if with_aux else (out, ())
    return jax.lax.scan(one_layer, x_BxTxD, params)

  def iteration(carry, t):
    state_SxBxTxD, loop_MxBxTxD, out_MxBxTxD, aux_SxRxC = carry
    virtual_S = t - stages_S
    micro_S = jnp.mod(virtual_S, m)
    repeat_S = jnp.clip(virtual_S // m, 0, r - 1)
    active_S = (virtual_S >= 0) & (virtual_S < r * m)  # Schedule.active, for every stage
    # Stage 0 takes a fresh microbatch for the first M iterations, then the last stage's output
    # of M iterations ago (the same microbatch, one chunk on; there since M >= S).
    first = jnp.where(t < m, x_MxBxTxD[jnp.minimum(t, m - 1)], loop_MxBxTxD[jnp.mod(t, m)])
    inputs_SxBxTxD = jnp.roll(state_SxBxTxD, 1, axis=0).at[0].set(first)
    inputs_SxBxTxD = _constrain_stage_axis(inputs_SxBxTxD)
    chunk_params = over_stages(lambda p, i: jax.tree.map(lambda w: w[i], p))(params_SxR,
                                                                             repeat_S)
    outputs_SxBxTxD, aux_SxC = over_stages(chunk)(chunk_params, inputs_SxBxTxD,
                                                  positions_MxBxT[micro_S])
    outputs_SxBxTxD = _constrain_stage_axis(outputs_SxBxTxD)
    # Each active stage adds its chunk's aux to slot [s, repeat]; bubble slots add nothing
    # (`where`, not a product, so that garbage there cannot leak in as NaN).
    slot_SxR = jax.nn.one_hot(repeat_S, r, dtype=bool) & active_S[:, None]

    def add(total_SxRxC_, value_SxC_):
      mask = slot_SxR.reshape(s, r, *[1] * (value_SxC_.ndim - 1))
      return total_SxRxC_ + jnp.where(mask, value_SxC_[:, None], 0).astype(total_SxRxC_.dtype)
    aux_SxRxC = jax.tree.map(add, aux_SxRxC, aux_SxC)
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
    return (outputs_SxBxTxD, loop_MxBxTxD, out_MxBxTxD, aux_SxRxC), None

  state_SxBxTxD = jnp.zeros((s, *x_MxBxTxD.shape[1:]), x_BxTxD.dtype)
  aux_shapes = jax.eval_shape(over_stages(chunk), jax.tree.map(lambda w: w[:, 0], params_SxR),
                              state_SxBxTxD, positions_MxBxT[jnp.zeros(s, jnp.int32)])[1]
  aux_SxRxC = jax.tree.map(lambda a: jnp.zeros((s, r, *a.shape[1:]), a.dtype), aux_shapes)
  carry = (_constrain_stage_axis(state_SxBxTxD), jnp.zeros_like(x_MxBxTxD),
           jnp.zeros_like(x_MxBxTxD), aux_SxRxC)
  (_, _, out_MxBxTxD, aux_SxRxC), _ = jax.lax.scan(iteration, carry,
                                                   jnp.arange(schedule.num_iterations))
  out_BxTxD = _unmicrobatch(out_MxBxTxD)
  if not with_aux:
    return out_BxTxD
  # Every (stage, chunk) slot is active once per microbatch: the sum over M is M means.
  return out_BxTxD, jax.tree.map(lambda a: _from_stages(a) / m, aux_SxRxC)
