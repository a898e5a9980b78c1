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

import jax
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
  """(order [R], slot [R], group of each block [N]) for expert ids [R] in [0, num_groups].

  Row order[i] (the i-th row sorted by id) goes to slot[i] of the padded layout; id == num_groups
  (padding) gets slot N * b, outside it. Blocks past the last group's belong to the last group and
  hold zeros.
  """
  r, b = ids_R.shape[0], rows_per_block
  n = num_blocks(r, num_groups, b)
  sizes_G = jnp.bincount(ids_R, length=num_groups)  # padding ids (== num_groups) not counted
  padded_G = (sizes_G + b - 1) // b * b
  padded_end_G = jnp.cumsum(padded_G)
  order_R = jnp.argsort(ids_R, stable=True)
  sorted_ids_R = ids_R[order_R]
  group_R = jnp.minimum(sorted_ids_R, num_groups - 1)
  rank_R = jnp.arange(r) - (jnp.cumsum(sizes_G) - sizes_G)[group_R]
  slot_R = jnp.where(sorted_ids_R < num_groups,
                     (padded_end_G - padded_G)[group_R] + rank_R, n * b)
  group_N = jnp.minimum(jnp.searchsorted(padded_end_G, jnp.arange(n) * b, side='right'),
                        num_groups - 1)
  return order_R, slot_R, group_N


def blocked_ffn(rows_RxD, ids_R, num_groups: int, w: dict, ffn, reduce=lambda y: y):
  """FFN_(ids[i])(rows[i]) for rows [R, D] and ids [R] in [0, num_groups] (num_groups: padding,
  whose output is unused), computed block by block; `ffn` is a `moe_dispatch.ExpertFFN`."""
  r, d = rows_RxD.shape
  b = block_rows(r, num_groups)
  n = num_blocks(r, num_groups, b)
  order_R, slot_R, group_N = block_layout(ids_R, num_groups, b)
  blocks_NxBxD = jnp.zeros((n * b, d), rows_RxD.dtype).at[slot_R].set(
      rows_RxD[order_R], mode='drop').reshape(n, b, d)

  def one_block(args):
    x_BxD, group = args
    w_one = {name: value[group] for name, value in w.items()}
    return ffn(x_BxD, w_one, jnp.matmul, lambda y, bias: y if bias is None else y + bias, reduce)

  out_NxBxD = jax.lax.map(one_block, (blocks_NxBxD, group_N))
  sorted_out_RxD = out_NxBxD.reshape(n * b, d)[jnp.minimum(slot_R, n * b - 1)]
  return sorted_out_RxD[jnp.argsort(order_R)]
