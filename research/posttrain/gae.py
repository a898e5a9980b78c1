"""Generalised advantage estimation (Schulman et al. 2016) over each row's response tokens."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(rewards_BxT, values_BxT, mask_BxT, gamma: float = 1.0, lam: float = 0.95):
  """-> (advantages_BxT, returns_BxT), float32, from per-token rewards and value estimates.

  `mask_BxT` marks each row's response tokens, one contiguous span; the value after a row's last
  masked token is 0 (the episode ends there). advantage_t = sum_k (gamma lam)^k delta_{t+k} with
  delta_t = r_t + gamma V_{t+1} - V_t; returns = advantages + values; both are 0 where the mask
  is 0.
  """
  rewards_BxT = jnp.asarray(rewards_BxT, jnp.float32)
  values_BxT = jnp.asarray(values_BxT, jnp.float32)
  mask_BxT = jnp.asarray(mask_BxT, jnp.float32)
  if not rewards_BxT.shape == values_BxT.shape == mask_BxT.shape or rewards_BxT.ndim != 2:
    raise ValueError(f'gae: rewards {rewards_BxT.shape}, values {values_BxT.shape} and mask '
                     f'{mask_BxT.shape} must be one [batch, length] shape')
  # Column t + 1 of the values and mask, with zeros past the end: V_{t+1} is 0 after the span.
  next_mask_BxT = jnp.pad(mask_BxT[:, 1:], ((0, 0), (0, 1)))
  next_values_BxT = jnp.pad(values_BxT[:, 1:], ((0, 0), (0, 1))) * next_mask_BxT
  deltas_BxT = rewards_BxT + gamma * next_values_BxT - values_BxT

  def backwards(next_advantage_B, column):
    delta_B, next_mask_B = column
    advantage_B = delta_B + gamma * lam * next_mask_B * next_advantage_B
    return advantage_B, advantage_B

  _, advantages_TxB = jax.lax.scan(backwards, jnp.zeros(rewards_BxT.shape[:1], jnp.float32),
                                   (deltas_BxT.T, next_mask_BxT.T), reverse=True)
  advantages_BxT = advantages_TxB.T * mask_BxT
  return advantages_BxT, (advantages_BxT + values_BxT) * mask_BxT
