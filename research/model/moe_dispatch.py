"""Routed tokens to their experts and back: dropless, capacity-limited, across devices, reference.

Every path computes y_t = sum_j g_tj FFN_(e_tj)(x_t) over token t's kept assignments (its j-th
choice e_tj, gate weight g_tj):
- dropless: the assignments sorted by expert and each projection one grouped matmul
  (`jax.lax.ragged_dot`), or, where that is slow (XLA:CPU), dense matmuls over blocks of one
  expert's rows (`research/model/moe_blocks.py`);
- capacity: per sequence, expert e takes its first Z assignments (choice-major: every token's first
  choice before any second choice) into an [E, Z] buffer; the rest are dropped;
- reference: every expert on every token, masked by the gates (for tests).
Under a mesh the grouped paths run per device inside `shard_map`, so sorting never gathers the
batch; when the experts are split over the mesh axes of the logical axis 'exp', each device sends
its tokens to the devices holding their experts and gets the results back (two all-to-alls).
Dropless exchange buffers are sized for the worst case (every assignment to one device), so
nothing is dropped at the price of memory; capacity buffers are [E, Z] per sequence either way.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from research.model import moe_blocks

# Expert weights: [E, D, F] in-projections, [E, F, D] out-projection, and their biases.
IN_WEIGHTS = ('wi', 'wi_gate', 'wi_up')


@dataclasses.dataclass(frozen=True)
class ExpertFFN:
  """One expert's feed-forward (GELU MLP or SwiGLU), written once for every layout of its rows."""
  kind: str
  gelu_approximate: bool
  grouped_matmul: str = 'ragged_dot'  # how dropless rows meet their experts: or 'blocked'

  def __call__(self, x, w: dict, matmul, add_bias, reduce=lambda y: y):
    """`matmul(x, w_ExIxO)` and `add_bias(y, b_ExO or None)` say how rows meet their expert;
    `reduce` sums partial results of a feed-forward width split over devices."""
    if self.kind == 'swiglu':
      h = (jax.nn.silu(add_bias(matmul(x, w['wi_gate']), w.get('wi_gate_bias'))) *
           add_bias(matmul(x, w['wi_up']), w.get('wi_up_bias')))
    else:
      h = jax.nn.gelu(add_bias(matmul(x, w['wi']), w.get('wi_bias')),
                      approximate=self.gelu_approximate)
    return add_bias(reduce(matmul(h, w['wo'])), w.get('wo_bias'))


def _buffer_matmul(x_xExZxI, w_ExIxO):
  return jnp.einsum('...ezi,eio->...ezo', x_xExZxI, w_ExIxO)


def _buffer_bias(y_xExZxO, b_ExO):
  return y_xExZxO if b_ExO is None else y_xExZxO + b_ExO[:, None, :]


def grouped_ffn(rows, ids, num_groups: int, w: dict, ffn: ExpertFFN, reduce=lambda y: y):
  """FFN_(ids[i])(rows[i]) for rows [R, D] and expert ids [R] in [0, num_groups].

  Rows are sorted by id and each projection is one `ragged_dot`; id == num_groups marks padding,
  sorted last and left out of every group (its output is the bias only, and unused). With
  `ffn.grouped_matmul == 'blocked'` the experts run block by block instead (same result).
  """
  if ffn.grouped_matmul == 'blocked':
    return moe_blocks.blocked_ffn(rows, ids, num_groups, w, ffn, reduce)
  order = jnp.argsort(ids, stable=True)
  sorted_rows, sorted_ids = rows[order], ids[order]
  group_sizes = jnp.bincount(ids, length=num_groups).astype(jnp.int32)
  bias_ids = jnp.minimum(sorted_ids, num_groups - 1)
  matmul = lambda x, w_ExIxO: jax.lax.ragged_dot(x, w_ExIxO, group_sizes)
  add_bias = lambda y, b_ExO: y if b_ExO is None else y + b_ExO[bias_ids]
  sorted_out = ffn(sorted_rows, w, matmul, add_bias, reduce)
  return sorted_out[jnp.argsort(order)]


# ---- the routed assignments ------------------------------------------------------------------

def capacity_slots(experts_BxTxX, num_experts: int, capacity: int):
  """(slot, kept) of each assignment: its place in its expert's per-sequence buffer, choice-major.

  In each sequence the assignments are ranked first by choice (every token's first choice before
  any second choice), then by position; expert e accepts its first `capacity` assignments.
  """
  b, t, x = experts_BxTxX.shape
  choice_major_BxXT = jnp.swapaxes(experts_BxTxX, 1, 2).reshape(b, x * t)
  one_hot_BxXTxE = jax.nn.one_hot(choice_major_BxXT, num_experts, dtype=jnp.int32)
  before_BxXTxE = jnp.cumsum(one_hot_BxXTxE, axis=1) - one_hot_BxXTxE
  slot_BxXT = jnp.sum(before_BxXTxE * one_hot_BxXTxE, axis=-1)
  slot_BxTxX = jnp.swapaxes(slot_BxXT.reshape(b, x, t), 1, 2)
  return slot_BxTxX, slot_BxTxX < capacity


def expert_capacity(capacity_factor: float, seq_len: int, experts_per_token: int,
                    num_experts: int) -> int:
  """Slots per expert and sequence: ceil(c T k / E), at most T (a token picks an expert once)."""
  return max(1, min(seq_len, math.ceil(capacity_factor * seq_len * experts_per_token /
                                       num_experts)))


def _combine(y_BxTxXxD, weights_BxTxX):
  return jnp.einsum('btxd,btx->btd', y_BxTxXxD, weights_BxTxX.astype(y_BxTxXxD.dtype))


# ---- one device's tokens ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Exchange:
  """The experts of one device and the mesh axes that hold the others; None names no axis."""
  expert_axes: tuple = ()  # experts split over these mesh axes (all-to-all over them)
  tensor_axes: tuple = ()  # each expert's feed-forward width split over these (psum over them)
  num_shards: int = 1  # product of the expert axes' sizes

  def reduce(self, y):
    return jax.lax.psum(y, self.tensor_axes) if self.tensor_axes else y

  def all_to_all(self, x):
    """[shards, ...] -> [shards, ...]: row s goes to shard s, row s of the result came from s."""
    if not self.expert_axes:
      return x
    return jax.lax.all_to_all(x, self.expert_axes, 0, 0, tiled=True)


def _dropless_local(x_BxTxD, experts_BxTxX, weights_BxTxX, w, ffn, exchange: Exchange):
  b, t, d = x_BxTxD.shape
  k = experts_BxTxX.shape[-1]
  rows_BTXxD = jnp.repeat(x_BxTxD.reshape(b * t, d), k, axis=0)
  experts_BTX = experts_BxTxX.reshape(-1)
  if exchange.num_shards == 1:
    y_BTXxD = grouped_ffn(rows_BTXxD, experts_BTX, w['wo'].shape[0], w, ffn, exchange.reduce)
  else:
    y_BTXxD = _dropless_exchange(rows_BTXxD, experts_BTX, w, ffn, exchange)
  return _combine(y_BTXxD.reshape(b, t, k, d), weights_BxTxX)


def _dropless_exchange(rows_BTXxD, experts_BTX, w, ffn, exchange: Exchange):
  """Send each assignment to the shard holding its expert, compute there, bring it back.

  The send buffer holds, for each destination shard, room for all of this device's assignments,
  so that no routing can overflow it.
  """
  n, (a, d) = exchange.num_shards, rows_BTXxD.shape
  local_experts = w['wo'].shape[0]
  order = jnp.argsort(experts_BTX, stable=True)
  sorted_rows, sorted_experts = rows_BTXxD[order], experts_BTX[order]
  dest = sorted_experts // local_experts
  counts = jnp.bincount(dest, length=n)
  offsets = jnp.cumsum(counts) - counts
  j = jnp.arange(a)
  valid = j[None, :] < counts[:, None]
  src = jnp.minimum(offsets[:, None] + j[None, :], a - 1)
  send_rows = jnp.where(valid[..., None], sorted_rows[src], 0)
  send_ids = jnp.where(valid, sorted_experts[src] - jnp.arange(n)[:, None] * local_experts,
                       local_experts)
  recv_rows, recv_ids = exchange.all_to_all(send_rows), exchange.all_to_all(send_ids)
  out = grouped_ffn(recv_rows.reshape(n * a, d), recv_ids.reshape(n * a), local_experts, w, ffn,
                    exchange.reduce)
  back = exchange.all_to_all(out.reshape(n, a, d))
  sorted_out = back[dest, j - offsets[dest]]
  return sorted_out[jnp.argsort(order)]


def _capacity_local(x_BxTxD, experts_BxTxX, weights_BxTxX, slots_BxTxX, kept_BxTxX, w, ffn,
                    exchange: Exchange, capacity: int):
  b, t, d = x_BxTxD.shape
  n, local_experts = exchange.num_shards, w['wo'].shape[0]
  num_experts = n * local_experts
  rows_B = jnp.arange(b)[:, None, None]
  slots = jnp.where(kept_BxTxX, slots_BxTxX, capacity)  # out of range: dropped by the scatter
  values_BxTxXxD = jnp.broadcast_to(x_BxTxD[:, :, None, :], (*experts_BxTxX.shape, d))
  buffer_BxExZxD = jnp.zeros((b, num_experts, capacity, d), x_BxTxD.dtype).at[
      rows_B, experts_BxTxX, slots].set(values_BxTxXxD, mode='drop')
  ffn_on = lambda buffer: ffn(buffer, w, _buffer_matmul, _buffer_bias, exchange.reduce)
  if n == 1:
    y_BxExZxD = ffn_on(buffer_BxExZxD)
  else:  # [B, E, Z, D] -> [shards, B, E/shards, Z, D], exchanged, computed, exchanged back
    split = jnp.moveaxis(buffer_BxExZxD.reshape(b, n, local_experts, capacity, d), 1, 0)
    back = exchange.all_to_all(ffn_on(exchange.all_to_all(split)))
    y_BxExZxD = jnp.moveaxis(back, 0, 1).reshape(b, num_experts, capacity, d)
  y_BxTxXxD = y_BxExZxD[rows_B, experts_BxTxX, jnp.minimum(slots_BxTxX, capacity - 1)]
  return _combine(y_BxTxXxD, jnp.where(kept_BxTxX, weights_BxTxX, 0.0))


# ---- entry points -------------------------------------------------------------------------------

def reference_experts(x_BxTxD, experts_BxTxX, weights_BxTxX, kept_BxTxX, w, ffn: ExpertFFN):
  """Every expert on every token, combined with dense gates (zero for unchosen or dropped)."""
  b, t, d = x_BxTxD.shape
  e = w['wo'].shape[0]
  x_ExBTxD = jnp.broadcast_to(x_BxTxD.reshape(1, b * t, d), (e, b * t, d))
  y_ExBTxD = ffn(x_ExBTxD, w, _buffer_matmul, _buffer_bias)
  gates_BTxX = jnp.where(kept_BxTxX, weights_BxTxX, 0.0).reshape(b * t, -1)
  gates_BTxE = jnp.zeros((b * t, e), jnp.float32).at[
      jnp.arange(b * t)[:, None], experts_BxTxX.reshape(b * t, -1)].add(gates_BTxX)
  y_BTxD = jnp.einsum('ue,eud->ud', gates_BTxE.astype(y_ExBTxD.dtype), y_ExBTxD)
  return y_BTxD.reshape(b, t, d)


def _mesh_axes(mesh, logical: str) -> tuple:
  """The mesh axes (of size > 1) the logical axis maps to under the current rules."""
  if not nn.get_logical_axis_rules():
    return ()
  spec = nn.logical_to_mesh_axes((logical,))[0]
  spec = () if spec is None else (spec,) if isinstance(spec, str) else tuple(spec)
  return tuple(a for a in spec if a in mesh.axis_names and mesh.shape[a] > 1)


def _sharded_layout(batch_size: int, num_experts: int):
  """(token axes, expert axes, tensor axes) for shard_map under the current mesh, or None.

  None when there is no mesh, nothing to split, or the batch or experts do not divide evenly (the
  computation then runs as one program that XLA partitions).
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return None
  batch, experts, tensor = (_mesh_axes(mesh, name) for name in ('batch', 'exp', 'mlp'))
  tensor = tuple(a for a in tensor if a not in batch + experts)
  tokens = batch + tuple(a for a in experts if a not in batch)
  size = lambda axes: math.prod(mesh.shape[a] for a in axes)
  if not tokens + tensor or batch_size % size(tokens) or num_experts % size(experts):
    return None
  return tokens, experts, tensor, size(experts)


def routed_experts(x_BxTxD, experts_BxTxX, weights_BxTxX, slots_BxTxX, kept_BxTxX, w: dict,
                   ffn: ExpertFFN, capacity: int = 0):
  """The routed experts' output [B, T, D]; `capacity` 0 is dropless (slots and kept unused).

  `w` holds the expert weights (`wi` or `wi_gate`/`wi_up` [E, D, F], `wo` [E, F, D], optional
  `*_bias` [E, F] / [E, D]).
  """
  num_experts = w['wo'].shape[0]
  layout = _sharded_layout(x_BxTxD.shape[0], num_experts)

  def local(x, experts, weights, slots, kept, w, exchange=Exchange()):
    if capacity:
      return _capacity_local(x, experts, weights, slots, kept, w, ffn, exchange, capacity)
    return _dropless_local(x, experts, weights, w, ffn, exchange)

  if layout is None:
    return local(x_BxTxD, experts_BxTxX, weights_BxTxX, slots_BxTxX, kept_BxTxX, w)
  tokens, expert_axes, tensor_axes, num_shards = layout
  exchange = Exchange(expert_axes, tensor_axes, num_shards)
  e, f = expert_axes or None, tensor_axes or None
  weight_specs = {name: (P(e, None, f) if name in IN_WEIGHTS else P(e, f, None) if name == 'wo'
                         else P(e, None) if name == 'wo_bias' else P(e, f)) for name in w}
  token_spec = P(tokens)
  run = jax.shard_map(lambda *args: local(*args, exchange=exchange),
                      in_specs=(token_spec,) * 5 + (weight_specs,), out_specs=token_spec)
  return run(x_BxTxD, experts_BxTxX, weights_BxTxX, slots_BxTxX, kept_BxTxX, w)
