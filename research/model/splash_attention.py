"""TPU attention through the Pallas splash-attention kernel (block-sparse, never [T, S] in HBM).

Grouped-query heads run as one multi-query kernel per key/value head. On CPU the same kernel runs
in interpret mode, which is how the tests check it against the reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as kernel_lib
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as mask_lib


def _kernel(t: int, s: int, groups: int, sliding_window: int, interpret: bool):
  if sliding_window:
    mask = mask_lib.LocalMask((t, s), window_size=(sliding_window - 1, 0), offset=s - t)
  else:
    mask = mask_lib.CausalMask((t, s), offset=s - t)
  block = min(512, t, s)
  sizes = kernel_lib.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                                block_q_dkv=block, block_kv_dkv=block,
                                block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
  return kernel_lib.make_splash_mqa(mask_lib.MultiHeadMask([mask] * groups), block_sizes=sizes,
                                    head_shards=1, q_seq_shards=1, interpret=interpret)


def splash_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, sliding_window: int = 0,
                     interpret: bool = False):
  """Causal GQA attention with the splash kernel; q is pre-scaled by 1/sqrt(head_dim)."""
  b, t, n, h = q_BxTxNxH.shape
  s, k = k_BxSxKxH.shape[1], k_BxSxKxH.shape[2]
  g = n // k
  kernel = _kernel(t, s, g, sliding_window, interpret)
  q_BKxGxTxH = (q_BxTxNxH / jnp.sqrt(jnp.float32(h)).astype(q_BxTxNxH.dtype)).reshape(
      b, t, k, g, h).transpose(0, 2, 3, 1, 4).reshape(b * k, g, t, h)  # R = B x K rows
  k_BKxSxH = k_BxSxKxH.transpose(0, 2, 1, 3).reshape(b * k, s, h)
  v_BKxSxH = v_BxSxKxH.transpose(0, 2, 1, 3).reshape(b * k, s, h)
  if interpret:  # the interpreter cannot batch the kernel's grid: loop over rows instead
    out_BKxGxTxH = jax.lax.map(lambda args: kernel(*args), (q_BKxGxTxH, k_BKxSxH, v_BKxSxH))
  else:
    out_BKxGxTxH = jax.vmap(kernel)(q_BKxGxTxH, k_BKxSxH, v_BKxSxH)
  return out_BKxGxTxH.reshape(b, k, g, t, h).transpose(0, 3, 1, 2, 4).reshape(b, t, n, h)
