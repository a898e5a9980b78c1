"""The post-training objectives, as pure functions of log-probabilities, scores and masks.

Every [B, T] array is aligned with the tokens it scores: column t holds what concerns token t
(its log-probability given tokens :t, its KL term, its advantage), and masks mark the response
tokens a loss counts. SFT, Bradley-Terry, DPO, the KL estimators, PPO's clipped surrogate and value
loss, and GRPO's group-relative advantages and loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

KL_ESTIMATORS = ('k1', 'k3')
GRPO_EPS = 1e-4  # added to a group's standard deviation before dividing by it


def masked_mean(x_BxT, mask_BxT):
  """Mean of `x` over the positions where the mask is 1 (0 when none is)."""
  mask_BxT = mask_BxT.astype(jnp.float32)
  return jnp.sum(x_BxT * mask_BxT) / jnp.maximum(jnp.sum(mask_BxT), 1.0)


def sft_loss(logprobs_BxT, loss_mask_BxT):
  """Mean negative log-likelihood of the masked (response) tokens; column 0 never counts."""
  mask_BxT = jnp.asarray(loss_mask_BxT, jnp.float32).at[:, 0].set(0.0)
  return masked_mean(-logprobs_BxT, mask_BxT)


def bradley_terry_loss(reward_chosen_B, reward_rejected_B):
  """-> (mean of -log sigmoid(r_chosen - r_rejected), share of pairs with r_chosen > r_rejected)."""
  margin_B = reward_chosen_B.astype(jnp.float32) - reward_rejected_B.astype(jnp.float32)
  return -jnp.mean(jax.nn.log_sigmoid(margin_B)), jnp.mean((margin_B > 0).astype(jnp.float32))


def dpo_loss(policy_chosen_B, policy_rejected_B, reference_chosen_B, reference_rejected_B,
             beta: float = 0.1, label_smoothing: float = 0.0):
  """DPO (Rafailov et al. 2023), conservative with `label_smoothing` eps: a float32 scalar.

  The batch mean of -[(1 - eps) log sigmoid(beta D) + eps log sigmoid(-beta D)] with
  D = (pi_chosen - ref_chosen) - (pi_rejected - ref_rejected), the arguments being sequence
  log-probabilities summed over response tokens (`sequence_logprobs`).
  """
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  delta_B = ((f32(policy_chosen_B) - f32(reference_chosen_B)) -
             (f32(policy_rejected_B) - f32(reference_rejected_B)))
  losses_B = -((1.0 - label_smoothing) * jax.nn.log_sigmoid(beta * delta_B) +
               label_smoothing * jax.nn.log_sigmoid(-beta * delta_B))
  return jnp.mean(losses_B)


def dpo_metrics(policy_chosen_B, policy_rejected_B, reference_chosen_B, reference_rejected_B,
                beta: float) -> dict:
  """Implicit rewards beta (pi - ref) of chosen and rejected, their margin and the pair accuracy."""
  chosen_B = beta * (policy_chosen_B - reference_chosen_B)
  rejected_B = beta * (policy_rejected_B - reference_rejected_B)
  return {'reward_chosen': jnp.mean(chosen_B), 'reward_rejected': jnp.mean(rejected_B),
          'reward_margin': jnp.mean(chosen_B - rejected_B),
          'accuracy': jnp.mean((chosen_B > rejected_B).astype(jnp.float32))}


def kl_terms(logprobs_BxT, reference_logprobs_BxT, estimator: str):
  """Per-token estimates of KL(pi || ref) on tokens sampled from pi (Schulman 2020).

  k1 = log pi - log ref (unbiased, can be negative); k3 = exp(ref - pi) - (ref - pi) - 1
  (unbiased, never negative, lower variance).
  """
  log_ratio_BxT = reference_logprobs_BxT - logprobs_BxT
  if estimator == 'k1':
    return -log_ratio_BxT
  if estimator == 'k3':
    return jnp.exp(log_ratio_BxT) - log_ratio_BxT - 1.0
  raise ValueError(f'posttrain.kl_estimator={estimator!r}: unknown; expected one of '
                   f'{KL_ESTIMATORS}')


def last_token_mask(mask_BxT):
  """1 at each row's last masked position, 0 elsewhere (rows without one stay 0)."""
  t = mask_BxT.shape[1]
  last_B = t - 1 - jnp.argmax(jnp.flip(mask_BxT, axis=1), axis=1)
  has_B = jnp.any(mask_BxT > 0, axis=1)
  return jax.nn.one_hot(last_B, t) * has_B[:, None]


def ppo_rewards(scores_B, logprobs_BxT, reference_logprobs_BxT, mask_BxT, beta: float,
                estimator: str):
  """Per-token rewards of PPO with a KL penalty (Ziegler et al. 2019; Ouyang et al. 2022).

  -beta * KL term on every response token, plus the sequence's score on its last token.
  """
  mask_BxT = mask_BxT.astype(jnp.float32)
  penalty_BxT = -beta * kl_terms(logprobs_BxT, reference_logprobs_BxT, estimator) * mask_BxT
  return penalty_BxT + scores_B.astype(jnp.float32)[:, None] * last_token_mask(mask_BxT)


def whiten(x_BxT, mask_BxT, eps: float = 1e-8):
  """`x` shifted and scaled to mean 0, variance 1 over the masked positions (0 elsewhere)."""
  mean = masked_mean(x_BxT, mask_BxT)
  variance = masked_mean(jnp.square(x_BxT - mean), mask_BxT)
  return (x_BxT - mean) * jax.lax.rsqrt(variance + eps) * mask_BxT


def clipped_surrogate(logprobs_BxT, old_logprobs_BxT, advantages_BxT, clip_eps: float):
  """-> (per-token loss -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A), 1 where the clip bit)."""
  ratio_BxT = jnp.exp(logprobs_BxT - old_logprobs_BxT)
  unclipped_BxT = -advantages_BxT * ratio_BxT
  clipped_BxT = -advantages_BxT * jnp.clip(ratio_BxT, 1.0 - clip_eps, 1.0 + clip_eps)
  return jnp.maximum(unclipped_BxT, clipped_BxT), (clipped_BxT > unclipped_BxT).astype(jnp.float32)


def ppo_policy_loss(logprobs_BxT, old_logprobs_BxT, advantages_BxT, mask_BxT, clip_eps: float):
  """-> (PPO's clipped surrogate loss, clip fraction), both means over the masked tokens."""
  loss_BxT, clipped_BxT = clipped_surrogate(logprobs_BxT, old_logprobs_BxT, advantages_BxT,
                                            clip_eps)
  return masked_mean(loss_BxT, mask_BxT), masked_mean(clipped_BxT, mask_BxT)


def value_loss(values_BxT, old_values_BxT, returns_BxT, mask_BxT, value_clip: float):
  """0.5 * mean over masked tokens of max((V - R)^2, (V_clipped - R)^2), V_clipped within
  `value_clip` of the rollout's values (no clipping when `value_clip` <= 0)."""
  squared_BxT = jnp.square(values_BxT - returns_BxT)
  if value_clip > 0:
    clipped_BxT = old_values_BxT + jnp.clip(values_BxT - old_values_BxT, -value_clip, value_clip)
    squared_BxT = jnp.maximum(squared_BxT, jnp.square(clipped_BxT - returns_BxT))
  return 0.5 * masked_mean(squared_BxT, mask_BxT)


def grpo_advantages(rewards_BxE):
  """Group-relative advantages (Shao et al. 2024): (r - group mean) / (group std + GRPO_EPS).

  Row b holds the rewards of the E samples drawn for prompt b; the standard deviation is the
  sample one (ddof = 1), so E must be at least 2.
  """
  rewards_BxE = rewards_BxE.astype(jnp.float32)
  mean_Bx1 = jnp.mean(rewards_BxE, axis=1, keepdims=True)
  std_Bx1 = jnp.std(rewards_BxE, axis=1, keepdims=True, ddof=1)
  return (rewards_BxE - mean_Bx1) / (std_Bx1 + GRPO_EPS)


def grpo_loss(logprobs_BxT, old_logprobs_BxT, reference_logprobs_BxT, advantages_B, mask_BxT,
              clip_eps: float, beta: float, estimator: str):
  """-> (GRPO loss, clip fraction, mean KL term).

  Per token: the clipped surrogate with the sequence's advantage, plus beta times the KL term to
  the reference; averaged over each sequence's response tokens, then over sequences.
  """
  mask_BxT = mask_BxT.astype(jnp.float32)
  advantages_BxT = jnp.broadcast_to(advantages_B[:, None], logprobs_BxT.shape)
  surrogate_BxT, clipped_BxT = clipped_surrogate(logprobs_BxT, old_logprobs_BxT, advantages_BxT,
                                                 clip_eps)
  kl_BxT = kl_terms(logprobs_BxT, reference_logprobs_BxT, estimator)
  lengths_B = jnp.maximum(jnp.sum(mask_BxT, axis=1), 1.0)
  per_sequence = lambda x_BxT: jnp.mean(jnp.sum(x_BxT * mask_BxT, axis=1) / lengths_B)
  return (per_sequence(surrogate_BxT + beta * kl_BxT), masked_mean(clipped_BxT, mask_BxT),
          per_sequence(kl_BxT))
