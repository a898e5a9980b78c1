"""Position information, the one place that reads `model.position`.

'learned' and 'sinusoidal' add a table to the token embeddings (`embedding_positions`); 'rope'
rotates queries and keys inside attention (`rotate_queries_and_keys`); 'none' does neither.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

ADDITIVE = ('learned', 'sinusoidal')  # a table added to the token embeddings
ROTARY = ('rope',)  # queries and keys rotated by position


def sinusoidal_table(positions_BxT, d_model: int):
  """Vaswani et al. (2017): sin on even channels, cos on odd ones, wavelengths up to 10000 * 2pi."""
  inv_freq_R = 1.0 / (10000.0 ** (jnp.arange(0, d_model, 2, dtype=jnp.float32) / d_model))
  angles_BxTxR = positions_BxT.astype(jnp.float32)[..., None] * inv_freq_R
  table_BxTxRx2 = jnp.stack([jnp.sin(angles_BxTxR), jnp.cos(angles_BxTxR)], axis=-1)
  return table_BxTxRx2.reshape(*positions_BxT.shape, -1)[..., :d_model]


class LearnedPositions(nn.Module):
  """A trainable table of `max_len` position vectors (GPT-2's `wpe`)."""
  max_len: int
  d_model: int
  init_std: float = 0.02
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, positions_BxT):
    table_PxD = self.param(
        'embedding',
        nn.with_logical_partitioning(nn.initializers.normal(self.init_std), ('position', 'embed')),
        (self.max_len, self.d_model), self.param_dtype)
    return jnp.take(table_PxD, positions_BxT, axis=0)


def apply_rope(x_BxTxNxH, positions_BxT, base: float):
  """Rotary positions (Su et al. 2021) in the half-split layout Llama and Hugging Face use.

  Channel i is paired with channel i + H/2 and the pair is rotated by position * base^(-2i/H).
  Computed in float32 and cast back.
  """
  h = x_BxTxNxH.shape[-1]
  inv_freq_R = 1.0 / (base ** (jnp.arange(0, h, 2, dtype=jnp.float32) / h))
  angles_BxTxR = positions_BxT.astype(jnp.float32)[..., None] * inv_freq_R
  cos_BxTx1xR = jnp.cos(angles_BxTxR)[:, :, None, :]
  sin_BxTx1xR = jnp.sin(angles_BxTxR)[:, :, None, :]
  x = x_BxTxNxH.astype(jnp.float32)
  x1_BxTxNxR, x2_BxTxNxR = x[..., : h // 2], x[..., h // 2:]
  rotated = jnp.concatenate([x1_BxTxNxR * cos_BxTx1xR - x2_BxTxNxR * sin_BxTx1xR,
                             x2_BxTxNxR * cos_BxTx1xR + x1_BxTxNxR * sin_BxTx1xR], axis=-1)
  return rotated.astype(x_BxTxNxH.dtype)


def embedding_positions(c: ml_collections.ConfigDict, positions_BxT, dtype, param_dtype):
  """What the position encoding adds to the token embeddings, [B, T, D]; None unless additive.

  Called inside the Transformer, so a learned table is its submodule 'pos_embed'.
  """
  if c.position == 'learned':
    table = LearnedPositions(c.max_seq_len, c.d_model, c.init_std, param_dtype, name='pos_embed')
    return table(positions_BxT).astype(dtype)
  if c.position == 'sinusoidal':
    return sinusoidal_table(positions_BxT, c.d_model).astype(dtype)
  return None


def rotate_queries_and_keys(q_BxTxNxH, k_BxTxKxH, positions_BxT, position: str,
                            rope_base: float):
  """(q, k) rotated by their positions under 'rope'; unchanged under any other encoding."""
  if position not in ROTARY:
    return q_BxTxNxH, k_BxTxKxH
  return (apply_rope(q_BxTxNxH, positions_BxT, rope_base),
          apply_rope(k_BxTxKxH, positions_BxT, rope_base))
