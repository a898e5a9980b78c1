"""Memory-efficient causal attention for CPU: query blocks, online softmax over key blocks.

Never materialises the [T, S] scores: each query block scans the key blocks keeping a running
maximum, normaliser and weighted sum (Milakov & Gimelshein 2018; Rabe & Staats 2021). Each query
block is rematerialised in the backward pass, so activation memory grows linearly with length.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _pad_to(x, axis: int, multiple: int):
  pad = -x.shape[axis] % multiple
  if not pad:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, pad)
  return jnp.pad(x, widths)


def blockwise_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, sliding_window: int = 0,
                        q_block: int = 256, kv_block: int = 256):
  """Causal (optionally sliding-window) GQA attention, equal to `reference_attention`."""
  b, t, n, h = q_BxTxNxH.shape
  s, k = k_BxSxKxH.shape[1], k_BxSxKxH.shape[2]
  g = n // k
  q_block, kv_block = min(q_block, t), min(kv_block, s)
  scale = 1.0 / jnp.sqrt(jnp.float32(h))
  q = _pad_to(q_BxTxNxH.astype(jnp.float32) * scale, 1, q_block)
  k_all = _pad_to(k_BxSxKxH.astype(jnp.float32), 1, kv_block)
  v_all = _pad_to(v_BxSxKxH.astype(jnp.float32), 1, kv_block)
  num_q, num_kv = q.shape[1] // q_block, k_all.shape[1] // kv_block
  # [num_q, B, Qb, K, G, H]: one slice per query block.
  q_blocks = q.reshape(b, num_q, q_block, k, g, h).transpose(1, 0, 2, 3, 4, 5)
  offset = s - t  # queries are the last t positions of the s keys

  @functools.partial(jax.checkpoint, prevent_cse=False)
  def one_query_block(i, q_BxQxKxGxH):
    q_pos_Q = i * q_block + jnp.arange(q_block) + offset

    def step(carry, j):
      m_BxKxGxQ, l_BxKxGxQ, acc_BxKxGxQxH = carry
      k_BxUxKxH = jax.lax.dynamic_slice_in_dim(k_all, j * kv_block, kv_block, axis=1)
      v_BxUxKxH = jax.lax.dynamic_slice_in_dim(v_all, j * kv_block, kv_block, axis=1)
      s_BxKxGxQxU = jnp.einsum('bqkgh,bckh->bkgqc', q_BxQxKxGxH, k_BxUxKxH)
      k_pos_U = j * kv_block + jnp.arange(kv_block)
      mask_QxU = (k_pos_U[None, :] <= q_pos_Q[:, None]) & (k_pos_U[None, :] < s)
      if sliding_window:
        mask_QxU &= q_pos_Q[:, None] - k_pos_U[None, :] < sliding_window
      s_BxKxGxQxU = jnp.where(mask_QxU, s_BxKxGxQxU, -jnp.inf)
      m_new = jnp.maximum(m_BxKxGxQ, s_BxKxGxQxU.max(-1))
      p_BxKxGxQxU = jnp.where(mask_QxU, jnp.exp(s_BxKxGxQxU - m_new[..., None]), 0.0)
      correction = jnp.exp(m_BxKxGxQ - m_new)
      l_new = l_BxKxGxQ * correction + p_BxKxGxQxU.sum(-1)
      acc_new = acc_BxKxGxQxH * correction[..., None] + jnp.einsum(
          'bkgqc,bckh->bkgqh', p_BxKxGxQxU, v_BxUxKxH)
      return (m_new, l_new, acc_new), None

    finite_min = jnp.finfo(jnp.float32).min  # not -inf: exp(m_old - m_new) must stay defined
    init = (jnp.full((b, k, g, q_block), finite_min), jnp.zeros((b, k, g, q_block)),
            jnp.zeros((b, k, g, q_block, h)))
    (_, l, acc), _ = jax.lax.scan(step, init, jnp.arange(num_kv))
    out_BxKxGxQxH = acc / jnp.where(l == 0.0, 1.0, l)[..., None]
    return out_BxKxGxQxH.transpose(0, 3, 1, 2, 4).reshape(b, q_block, n, h)

  out_nqxBxQxNxH = jax.lax.map(lambda args: one_query_block(*args),
                               (jnp.arange(num_q), q_blocks))
  out_BxTxNxH = out_nqxBxQxNxH.transpose(1, 0, 2, 3, 4).reshape(b, num_q * q_block, n, h)
  return out_BxTxNxH[:, :t].astype(q_BxTxNxH.dtype)
