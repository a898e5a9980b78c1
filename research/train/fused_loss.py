"""Output layer and cross-entropy fused over chunks of positions: the [B, T, V] logits never exist.

The loss is a scalar mean, so its gradient with respect to a chunk's logits, softmax - one_hot
(plus the z-loss term), is known as soon as the chunk's logits are. The forward pass therefore
computes, chunk by chunk, the logits, the loss and the gradients of the hidden states and of the
output matrix, and keeps only those gradients; the backward pass scales them. Peak memory drops by
the logits and their gradient (B x T x V floats each), and each chunk's logits stay in cache: on
the CPU benchmark this is faster than materialising them. FLOPs are the same three matmuls.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def chunk_length(seq_len: int, max_chunk_len: int) -> int:
  """The largest divisor of `seq_len` that is at most `max_chunk_len` (so chunks tile T exactly)."""
  return max(d for d in range(1, min(seq_len, max_chunk_len) + 1) if seq_len % d == 0)


def _chunked(a_BxT_, chunk_len: int):
  """[B, T, ...] -> [T/c, B, c, ...]: the scan runs over the leading axis."""
  b, t = a_BxT_.shape[:2]
  return jnp.swapaxes(a_BxT_.reshape(b, t // chunk_len, chunk_len, *a_BxT_.shape[2:]), 0, 1)


def _loss_and_grads(x_BxTxD, unembed_DxV, targets_BxT, chunk_len: int, z_loss: float):
  """(total loss, mean nll) and d(total loss)/d(x, unembed), one chunk of positions at a time."""
  b, t, d = x_BxTxD.shape
  num_tokens = b * t
  # Both layouts of the output matrix, and the hidden states transposed, so that every matmul
  # below reads its operands row-major (on CPU a transposed operand halves the matmul rate).
  unembed_DxV, unembed_VxD = jax.lax.optimization_barrier((unembed_DxV, unembed_DxV.T))
  x_CxBxZxD = _chunked(x_BxTxD, chunk_len)
  xT_CxDxBxc = jax.lax.optimization_barrier(jnp.moveaxis(x_CxBxZxD, 3, 1))
  targets_CxBxZ = _chunked(targets_BxT, chunk_len)

  def one_chunk(dunembed_DxV, chunk):
    x_BxZxD, xT_DxBxc, targets_BxZ = chunk
    logits_BxZxV = jnp.einsum('bcd,dv->bcv', x_BxZxD, unembed_DxV,
                              preferred_element_type=jnp.float32)
    lse_BxZ = jax.nn.logsumexp(logits_BxZxV, axis=-1)
    target_logit_BxZ = jnp.take_along_axis(logits_BxZxV, targets_BxZ[..., None], axis=-1)[..., 0]
    probs_BxZxV = jnp.exp(logits_BxZxV - lse_BxZ[..., None])
    # d/dlogits of mean(nll) + z_loss * mean(lse^2): (p - onehot + 2 z lse p) / N.
    scale_BxZ = (1.0 + 2.0 * z_loss * lse_BxZ) if z_loss else jnp.ones_like(lse_BxZ)
    one_hot_BxZxV = jax.nn.one_hot(targets_BxZ, logits_BxZxV.shape[-1], dtype=jnp.float32)
    dlogits_BxZxV = ((probs_BxZxV * scale_BxZ[..., None] - one_hot_BxZxV) / num_tokens
                     ).astype(x_BxZxD.dtype)
    dx_BxZxD = jnp.einsum('bcv,vd->bcd', dlogits_BxZxV, unembed_VxD,
                          preferred_element_type=jnp.float32).astype(x_BxZxD.dtype)
    dunembed_DxV += jnp.einsum('dbc,bcv->dv', xT_DxBxc, dlogits_BxZxV,
                               preferred_element_type=jnp.float32)
    sums = (jnp.sum(lse_BxZ - target_logit_BxZ), jnp.sum(jnp.square(lse_BxZ)))
    return dunembed_DxV, (sums, dx_BxZxD)

  dunembed_DxV, ((nll_C, lse_sq_C), dx_CxBxZxD) = jax.lax.scan(
      one_chunk, jnp.zeros(unembed_DxV.shape, jnp.float32),
      (x_CxBxZxD, xT_CxDxBxc, targets_CxBxZ))
  nll = jnp.sum(nll_C) / num_tokens
  loss = nll + z_loss * jnp.sum(lse_sq_C) / num_tokens if z_loss else nll
  dx_BxTxD = jnp.swapaxes(dx_CxBxZxD, 0, 1).reshape(b, t, d)
  return (loss, nll), (dx_BxTxD, dunembed_DxV.astype(unembed_DxV.dtype))


def fused_cross_entropy(x_BxTxD, unembed_DxV, targets_BxT, chunk_len: int, z_loss: float = 0.0):
  """(mean nll + z_loss * mean(lse^2), mean nll) of logits x @ unembed, without materialising them.

  Differentiable in the first output only, with respect to `x_BxTxD` and `unembed_DxV`; the second
  is a metric (its gradient is zero). `chunk_len` must divide T.
  """
  if x_BxTxD.shape[1] % chunk_len:
    raise ValueError(f'chunk_len={chunk_len} must divide the sequence length {x_BxTxD.shape[1]}')

  @jax.custom_vjp
  def loss_and_nll(x_BxTxD, unembed_DxV):
    return _loss_and_grads(x_BxTxD, unembed_DxV, targets_BxT, chunk_len, z_loss)[0]

  def forward(x_BxTxD, unembed_DxV):
    return _loss_and_grads(x_BxTxD, unembed_DxV, targets_BxT, chunk_len, z_loss)

  def backward(grads, cotangents):
    (dx_BxTxD, dunembed_DxV), (g_loss, _) = grads, cotangents  # nll's cotangent is 0, see below
    return g_loss * dx_BxTxD, g_loss * dunembed_DxV

  loss_and_nll.defvjp(forward, backward)
  loss, nll = loss_and_nll(x_BxTxD, unembed_DxV)
  return loss, jax.lax.stop_gradient(nll)
