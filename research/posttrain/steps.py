"""The pure step functions of each stage: `(state, batch, ...) -> (state, metrics)`, and their
evaluations. The run jits them with the state's shardings.

`batch` holds [B, T] token rows and masks (see `packing`); PPO and GRPO steps take rollouts
(`rollouts.Rollout`) prepared by `prepare_ppo` / `prepare_grpo`, then make `posttrain.ppo_epochs`
passes of `posttrain.num_minibatches` optimizer updates over them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from research.model import Transformer
from research.posttrain import losses
from research.posttrain import reward_model
from research.posttrain.gae import gae
from research.posttrain.logprobs import (masked_sum, token_entropy_from_logits,
                                         token_kl_from_logits, token_logprobs,
                                         token_logprobs_from_logits)
from research.train.state import TrainState


def apply_gradients(state: TrainState, grads, optimizer) -> tuple[TrainState, jax.Array]:
  """One optimizer update; -> (state, global gradient norm)."""
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  return (TrainState(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                     opt_state=opt_state), optax.tree.norm(grads))


def _pairs(batch):
  """Chosen rows stacked over rejected rows: [2B, T] tokens and masks."""
  return (jnp.concatenate([batch['chosen'], batch['rejected']]),
          jnp.concatenate([batch['chosen_mask'], batch['rejected_mask']]))


# ---- SFT ---------------------------------------------------------------------------------------

def sft_eval_loss(m: ml_collections.ConfigDict, params, batch):
  """Mean NLL of a batch's response tokens under the policy."""
  return losses.sft_loss(token_logprobs(m, params, batch['tokens']), batch['mask'])


def make_sft_step(m: ml_collections.ConfigDict, optimizer):
  def step(state, batch):
    loss, grads = jax.value_and_grad(lambda p: sft_eval_loss(m, p, batch))(state.params)
    state, grad_norm = apply_gradients(state, grads, optimizer)
    return state, {'loss': loss, 'grad_norm': grad_norm,
                   'response_tokens': jnp.sum(batch['mask'][:, 1:])}
  return step


# ---- reward model ------------------------------------------------------------------------------

def reward_pair_metrics(m: ml_collections.ConfigDict, params, batch) -> dict:
  """Bradley-Terry loss, preference accuracy and mean margin of a batch of pairs."""
  tokens, mask = _pairs(batch)
  scores_B2 = reward_model.sequence_scores(m, params, tokens, mask)
  chosen_B, rejected_B = jnp.split(scores_B2, 2)
  loss, accuracy = losses.bradley_terry_loss(chosen_B, rejected_B)
  return {'loss': loss, 'preference_accuracy': accuracy,
          'margin': jnp.mean(chosen_B - rejected_B)}


def make_reward_step(m: ml_collections.ConfigDict, optimizer):
  def step(state, batch):
    def loss_fn(params):
      metrics = reward_pair_metrics(m, params, batch)
      return metrics['loss'], metrics
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state, grad_norm = apply_gradients(state, grads, optimizer)
    return state, {**metrics, 'grad_norm': grad_norm}
  return step


# ---- DPO ---------------------------------------------------------------------------------------

def dpo_pair_metrics(m: ml_collections.ConfigDict, params, reference_params, batch, beta: float,
                     label_smoothing: float) -> dict:
  """DPO loss, implicit rewards and accuracy of a batch of pairs."""
  tokens, mask = _pairs(batch)
  policy_chosen_B, policy_rejected_B = jnp.split(
      masked_sum(token_logprobs(m, params, tokens), mask), 2)
  reference_B2 = masked_sum(token_logprobs(m, reference_params, tokens), mask)
  reference_chosen_B, reference_rejected_B = jnp.split(jax.lax.stop_gradient(reference_B2), 2)
  args = (policy_chosen_B, policy_rejected_B, reference_chosen_B, reference_rejected_B)
  return {'loss': losses.dpo_loss(*args, beta=beta, label_smoothing=label_smoothing),
          **losses.dpo_metrics(*args, beta=beta)}


def make_dpo_step(m: ml_collections.ConfigDict, optimizer, beta: float, label_smoothing: float):
  def step(state, batch, reference_params):
    def loss_fn(params):
      metrics = dpo_pair_metrics(m, params, reference_params, batch, beta, label_smoothing)
      return metrics['loss'], metrics
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state, grad_norm = apply_gradients(state, grads, optimizer)
    return state, {**metrics, 'grad_norm': grad_norm}
  return step


# ---- PPO and GRPO ------------------------------------------------------------------------------

def _rollout_stats(logits_BxTxV, tokens_BxT, mask_BxT, reference_logprobs_BxT, estimator):
  """The policy's token log-probs on its rollouts, and KL / entropy metrics of them."""
  logprobs_BxT = token_logprobs_from_logits(logits_BxTxV, tokens_BxT)
  mask_BxT = mask_BxT.astype(jnp.float32)
  metrics = {
      # Sequence KL(pi || ref), estimated by the summed log-ratio of the sampled tokens (k1).
      'kl': jnp.mean(masked_sum(logprobs_BxT - reference_logprobs_BxT, mask_BxT)),
      'kl_penalty_term': jnp.mean(masked_sum(
          losses.kl_terms(logprobs_BxT, reference_logprobs_BxT, estimator), mask_BxT)),
      'entropy': losses.masked_mean(token_entropy_from_logits(logits_BxTxV), mask_BxT),
      'response_length': jnp.mean(jnp.sum(mask_BxT, axis=1)),
  }
  return logprobs_BxT, metrics


def prepare_ppo(m, p: ml_collections.ConfigDict, params, reference_params, tokens_BxT, mask_BxT,
                scores_B):
  """Rollouts -> what the PPO updates need: old log-probs and values, advantages, returns."""
  logits_BxTxV = Transformer(m).apply({'params': params['policy']}, tokens_BxT)
  reference_BxT = token_logprobs(m, reference_params, tokens_BxT)
  logprobs_BxT, metrics = _rollout_stats(logits_BxTxV, tokens_BxT, mask_BxT, reference_BxT,
                                         p.kl_estimator)
  values_BxT = reward_model.token_values(m, params['value'], tokens_BxT) * mask_BxT
  rewards_BxT = losses.ppo_rewards(scores_B, logprobs_BxT, reference_BxT, mask_BxT, p.beta,
                                   p.kl_estimator)
  advantages_BxT, returns_BxT = gae(rewards_BxT, values_BxT, mask_BxT, p.gamma, p.lam)
  if p.whiten_advantages:
    advantages_BxT = losses.whiten(advantages_BxT, mask_BxT)
  batch = {'tokens': tokens_BxT, 'mask': mask_BxT, 'old_logprobs': logprobs_BxT,
           'old_values': values_BxT, 'advantages': advantages_BxT, 'returns': returns_BxT}
  return batch, {**metrics, 'score': jnp.mean(scores_B),
                 'value_mean': losses.masked_mean(values_BxT, mask_BxT)}


def prepare_grpo(m, p: ml_collections.ConfigDict, params, reference_params, tokens_BxT, mask_BxT,
                 scores_B):
  """Rollouts (E = group_size consecutive rows per prompt) -> old and reference log-probs and
  group-relative advantages."""
  logits_BxTxV = Transformer(m).apply({'params': params}, tokens_BxT)
  reference_BxT = token_logprobs(m, reference_params, tokens_BxT)
  logprobs_BxT, metrics = _rollout_stats(logits_BxTxV, tokens_BxT, mask_BxT, reference_BxT,
                                         p.kl_estimator)
  advantages_B = losses.grpo_advantages(scores_B.reshape(-1, p.group_size)).reshape(-1)
  batch = {'tokens': tokens_BxT, 'mask': mask_BxT, 'old_logprobs': logprobs_BxT,
           'reference_logprobs': reference_BxT, 'advantages': advantages_B}
  return batch, {**metrics, 'score': jnp.mean(scores_B),
                 'groups_with_signal': jnp.mean(
                     (jnp.std(scores_B.reshape(-1, p.group_size), axis=1) > 0).astype(jnp.float32))}


def _ppo_minibatch_loss(m, p, params, mb):
  logprobs_BxT = token_logprobs(m, params['policy'], mb['tokens'])
  policy_loss, clip_fraction = losses.ppo_policy_loss(logprobs_BxT, mb['old_logprobs'],
                                                      mb['advantages'], mb['mask'], p.clip_eps)
  values_BxT = reward_model.token_values(m, params['value'], mb['tokens'])
  v_loss = losses.value_loss(values_BxT, mb['old_values'], mb['returns'], mb['mask'],
                             p.value_clip)
  approx_kl = losses.masked_mean(0.5 * jnp.square(logprobs_BxT - mb['old_logprobs']), mb['mask'])
  return policy_loss + p.vf_coef * v_loss, {'policy_loss': policy_loss, 'value_loss': v_loss,
                                            'clip_fraction': clip_fraction,
                                            'approx_kl_to_old': approx_kl}


def _grpo_minibatch_loss(m, p, params, mb):
  logprobs_BxT = token_logprobs(m, params, mb['tokens'])
  loss, clip_fraction, kl = losses.grpo_loss(
      logprobs_BxT, mb['old_logprobs'], mb['reference_logprobs'], mb['advantages'], mb['mask'],
      p.clip_eps, p.beta, p.kl_estimator)
  approx_kl = losses.masked_mean(0.5 * jnp.square(logprobs_BxT - mb['old_logprobs']), mb['mask'])
  return loss, {'policy_loss': loss, 'clip_fraction': clip_fraction, 'kl_in_loss': kl,
                'approx_kl_to_old': approx_kl}


def make_rl_update(m, p: ml_collections.ConfigDict, optimizer):
  """`(state, prepared rollouts, key) -> (state, metrics)`: `ppo_epochs` shuffled passes of
  `num_minibatches` updates each; metrics are means over the updates."""
  minibatch_loss = _ppo_minibatch_loss if p.stage == 'ppo' else _grpo_minibatch_loss

  def one_update(state, mb):
    (_, metrics), grads = jax.value_and_grad(
        lambda params: minibatch_loss(m, p, params, mb), has_aux=True)(state.params)
    state, grad_norm = apply_gradients(state, grads, optimizer)
    return state, {**metrics, 'grad_norm': grad_norm}

  def update(state, batch, key):
    rows = batch['tokens'].shape[0]

    def one_epoch(state, epoch_key):
      order = jax.random.permutation(epoch_key, rows)
      minibatches = jax.tree.map(
          lambda x: x[order].reshape(p.num_minibatches, rows // p.num_minibatches, *x.shape[1:]),
          batch)
      return jax.lax.scan(one_update, state, minibatches)

    state, metrics = jax.lax.scan(one_epoch, state, jax.random.split(key, p.ppo_epochs))
    return state, jax.tree.map(jnp.mean, metrics)

  return update


# ---- evaluation of a policy ----------------------------------------------------------------------

def sampled_kl(m, params, reference_params, tokens_BxT, mask_BxT):
  """Mean over rows of the sequence KL(pi || ref) on responses sampled from pi: the exact
  per-token KL over the vocabulary, summed over each response (unbiased, low variance)."""
  kl_BxT = token_kl_from_logits(Transformer(m).apply({'params': params}, tokens_BxT),
                                Transformer(m).apply({'params': reference_params}, tokens_BxT))
  return jnp.mean(masked_sum(kl_BxT, mask_BxT))
