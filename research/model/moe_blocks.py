"""Dropless experts as whole blocks: each expert's rows padded to blocks of b, one matmul a block.

`jax.lax.ragged_dot` is a fused grouped-matmul kernel on GPU and TPU, but XLA:CPU computes it as
if every row met every expert: its cost grows with the expert count, not with the routed rows.
Here the rows, sorted by expert, are laid out so that each expert's rows start a new block of b
(the MegaBlocks layout): a block then holds rows of one expert only, and the experts' feed-forward
runs block by block as plain dense matmuls. At most num_groups * (b - 1) padding rows are added
(zeros, never read back), so the work stays within that of the routed rows plus one block per
expert. b is the power of two at or above the mean rows per expert, at most `MAX_BLOCK_ROWS`.
"""

from __future__ import annotations

import jax.numpy as jnp

MAX_BLOCK_ROWS = 128


def block_rows(num_rows: int, num_groups: int) -> int:
  """Rows per block: the power of two at or above ceil(num_rows / num_groups), capped."""
  mean = -(-num_rows // num_groups)
  return min(MAX_BLOCK_ROWS, 1 << max(0, (mean - 1).bit_length()))


def num_blocks(num_rows: int, num_groups: int, rows_per_block: int) -> int:
  """Enough blocks for any routing: each group wastes at most rows_per_block - 1 slots."""
  return -(-(num_rows + num_groups * (rows_per_block - 1)) // rows_per_block)


def block_layout(ids_R, num_groups: int, rows_per_block: int):
  """(source [N b], valid [N b], slot [R], group of each block [N]) for ids [R] in [0, num_groups].

  Padded slot p takes row source[p] where valid[p] (the others are zero padding); row i sits at
  slot[i] (padding rows, id == num_groups, at slot 0: their output is unused). Blocks past the
  last group's belong to the last group and hold zeros.
  """
  r, b = ids_R.shape[0], rows_per_block
  n = num_blocks(r, num_groups, b)
  sizes_G = jnp.bincount(ids_R, length=num_groups)  # padding ids (== num_groups) not counted
  padded_G = (sizes_G + b - 1) // b * b
  padded_end_G = jnp.cumsum(padded_G)
  padded_start_G, row_start_G = padded_end_G - padded_G, jnp.cumsum(sizes_G) - sizes_G
  # Block j belongs to the group whose padded rows span j b: the count of groups ending at or
  # before it (a comparison, not searchsorted, whose loop trips shard_map's replication check).
  ended_NxG = padded_end_G[None, :] <= (jnp.arange(n) * b)[:, None]
  group_N = jnp.minimum(jnp.sum(ended_NxG, axis=1), num_groups - 1)
  group_P = jnp.repeat(group_N, b, total_repeat_length=n * b)
  rank_P = jnp.arange(n * b) - padded_start_G[group_P]
  valid_P = (rank_P >= 0) & (rank_P < sizes_G[group_P])
  order_R = jnp.argsort(ids_R, stable=True)
  source_P = order_R[jnp.clip(row_start_G[group_P] + rank_P, 0, r - 1)]
  group_R = jnp.minimum(ids_R, num_groups - 1)
  rank_R = jnp.argsort(order_R) - row_start_G[group_R]  # place among its group's rows
  slot_R = jnp.where(ids_R < num_groups, padded_start_G[group_R] + rank_R, 0)
  return source_P, valid_P, slot_R, group_N


def blocked_ffn(rows_RxD, ids_R, num_groups: int, w: dict, ffn, reduce=lambda y: y):
  """FFN_(ids[i])(rows[i]) for rows [R, D] and ids [R] in [0, num_groups] (num_groups: padding,
  whose output is unused), as batched matmuls over blocks; `ffn` is a `moe_dispatch.ExpertFFN`.

  Each block takes its own copy of its expert's weights (N <= R / b + num_groups copies): a
  loop over blocks instead (lax.map) would keep only one, but fails shard_map's replication
  check inside the pipeline's vmap over stages.
  """
  r, d = rows_RxD.shape
  b = block_rows(r, num_groups)
  n = num_blocks(r, num_groups, b)
  source_P, valid_P, slot_R, group_N = block_layout(ids_R, num_groups, b)
  blocks_NxBxD = jnp.where(valid_P[:, None], rows_RxD[source_P], 0).reshape(n, b, d)
  w_N = {name: value[group_N] for name, value in w.items()}  # [N, I, O] and biases [N, O]
  matmul = lambda x_NxBxI, w_NxIxO: jnp.einsum('nbi,nio->nbo', x_NxBxI, w_NxIxO)
  add_bias = lambda y_NxBxO, b_NxO: y_NxBxO if b_NxO is None else y_NxBxO + b_NxO[:, None]
  out_NxBxD = ffn(blocks_NxBxD, w_N, matmul, add_bias, reduce)
  return out_NxBxD.reshape(n * b, d)[slot_R]
