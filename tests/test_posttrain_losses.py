"""The post-training objectives against closed forms, plain loops and hand computations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.posttrain import dpo_loss, gae
from research.posttrain import losses
from research.posttrain.logprobs import token_logprobs_from_logits


def _sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


@pytest.mark.parametrize('beta,eps', [(0.1, 0.0), (0.5, 0.2), (2.0, 0.1)])
def test_dpo_loss_matches_the_closed_form(beta, eps):
  rng = np.random.default_rng(0)
  pc, pr, rc, rr = (rng.normal(-20.0, 5.0, 7) for _ in range(4))
  want = np.mean([-((1 - eps) * math.log(_sigmoid(beta * d)) + eps * math.log(_sigmoid(-beta * d)))
                  for d in (pc - rc) - (pr - rr)])
  got = dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=eps)
  assert got.dtype == jnp.float32 and got.shape == ()
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_dpo_loss_is_log_two_when_the_policy_is_the_reference():
  x = np.random.default_rng(1).normal(size=4)
  np.testing.assert_allclose(float(dpo_loss(x, x + 1.0, x, x + 1.0)), math.log(2.0), rtol=1e-6)


def _gae_loop(rewards, values, mask, gamma, lam):
  advantages, returns = np.zeros_like(rewards), np.zeros_like(rewards)
  for b in range(rewards.shape[0]):
    span = np.flatnonzero(mask[b])
    running = 0.0
    for i in reversed(range(len(span))):
      t = span[i]
      next_value = values[b, span[i + 1]] if i + 1 < len(span) else 0.0
      delta = rewards[b, t] + gamma * next_value - values[b, t]
      running = delta + gamma * lam * running
      advantages[b, t] = running
      returns[b, t] = running + values[b, t]
  return advantages, returns


@pytest.mark.parametrize('gamma,lam', [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0), (0.99, 0.0)])
def test_gae_matches_a_plain_loop(gamma, lam):
  rng = np.random.default_rng(2)
  rewards, values = rng.normal(size=(4, 9)), rng.normal(size=(4, 9))
  mask = np.zeros((4, 9))
  for b, (start, end) in enumerate([(2, 9), (0, 4), (3, 4), (5, 8)]):
    mask[b, start:end] = 1
  advantages, returns = gae(rewards, values, mask, gamma=gamma, lam=lam)
  want_advantages, want_returns = _gae_loop(rewards, values, mask, gamma, lam)
  np.testing.assert_allclose(advantages, want_advantages, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(returns, want_returns, rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(advantages)[mask == 0] == 0)
  assert np.all(np.asarray(returns)[mask == 0] == 0)


def test_sft_mask_gives_exactly_zero_gradient_from_prompt_tokens():
  rng = np.random.default_rng(3)
  tokens = rng.integers(0, 11, (2, 7))
  mask = np.array([[0, 0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 0, 0, 0]])
  logits = jnp.asarray(rng.normal(size=(2, 7, 11)), jnp.float32)
  loss_fn = lambda l: losses.sft_loss(token_logprobs_from_logits(l, tokens), mask)
  grads = np.asarray(jax.grad(loss_fn)(logits))
  # The logits of position t predict token t + 1: only response targets may move them.
  predicts_response = mask[:, 1:] == 1
  assert np.all(grads[:, :-1][~predicts_response] == 0.0)
  assert np.all(grads[:, -1] == 0.0)
  assert np.all(np.abs(grads[:, :-1][predicts_response]).sum(-1) > 0)
  log_softmax = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
  nll = [-float(log_softmax[b, t - 1, tokens[b, t]]) for b in range(2) for t in range(1, 7)
         if mask[b, t]]
  np.testing.assert_allclose(float(loss_fn(logits)), np.mean(nll), rtol=1e-6)


def test_bradley_terry_by_hand():
  loss, accuracy = losses.bradley_terry_loss(jnp.array([1.0, -0.5, 2.0]),
                                             jnp.array([0.0, 0.5, 2.5]))
  want = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(1.0)) + math.log1p(math.exp(0.5))) / 3
  np.testing.assert_allclose(float(loss), want, rtol=1e-6)
  assert float(accuracy) == pytest.approx(1 / 3)


def test_kl_estimators_by_hand():
  logp, ref = jnp.array([[-1.0, -2.0]]), jnp.array([[-1.5, -0.5]])
  np.testing.assert_allclose(losses.kl_terms(logp, ref, 'k1'), [[0.5, -1.5]], rtol=1e-6)
  k3 = [math.exp(r - p) - (r - p) - 1 for p, r in ((-1.0, -1.5), (-2.0, -0.5))]
  np.testing.assert_allclose(losses.kl_terms(logp, ref, 'k3'), [k3], rtol=1e-6)
  with pytest.raises(ValueError, match='posttrain.kl_estimator'):
    losses.kl_terms(logp, ref, 'k2')


def test_ppo_rewards_losses_by_hand():
  logp = np.array([[0.0, -1.0, -0.5, -2.0], [0.0, -0.3, -0.2, 0.0]])
  old = np.array([[0.0, -1.2, -0.1, -2.0], [0.0, -0.3, -0.9, 0.0]])
  ref = np.array([[0.0, -0.8, -0.6, -1.0], [0.0, -0.5, -0.2, 0.0]])
  mask = np.array([[0, 1, 1, 0], [0, 1, 1, 0]])
  advantages = np.array([[0.0, 1.0, -2.0, 0.0], [0.0, -0.5, 3.0, 0.0]])
  eps, beta = 0.2, 0.1

  rewards = losses.ppo_rewards(jnp.array([1.0, 0.0]), logp, ref, mask, beta, 'k1')
  np.testing.assert_allclose(rewards, [[0, -0.1 * -0.2, -0.1 * 0.1 + 1.0, 0],
                                       [0, -0.1 * 0.2, 0.0, 0]], atol=1e-6)

  per_token, clipped = [], []
  for b in range(2):
    for t in range(4):
      if mask[b, t]:
        ratio = math.exp(logp[b, t] - old[b, t])
        a = advantages[b, t]
        per_token.append(max(-a * ratio, -a * min(max(ratio, 1 - eps), 1 + eps)))
        clipped.append(-a * min(max(ratio, 1 - eps), 1 + eps) > -a * ratio)
  loss, clip_fraction = losses.ppo_policy_loss(logp, old, advantages, mask, eps)
  np.testing.assert_allclose(float(loss), np.mean(per_token), rtol=1e-6)
  assert float(clip_fraction) == pytest.approx(np.mean(clipped)) and 0 < np.mean(clipped) < 1

  values, old_values = logp + 0.7, old + 0.3
  returns = advantages * 2.0
  squared = [max((values[b, t] - returns[b, t]) ** 2,
                 (old_values[b, t] + min(max(values[b, t] - old_values[b, t], -eps), eps) -
                  returns[b, t]) ** 2) for b in range(2) for t in range(4) if mask[b, t]]
  np.testing.assert_allclose(float(losses.value_loss(values, old_values, returns, mask, eps)),
                             0.5 * np.mean(squared), rtol=1e-6)
  unclipped = [(values[b, t] - returns[b, t]) ** 2 for b in range(2) for t in range(4)
               if mask[b, t]]
  np.testing.assert_allclose(float(losses.value_loss(values, old_values, returns, mask, 0.0)),
                             0.5 * np.mean(unclipped), rtol=1e-6)


def test_grpo_advantages_and_loss_by_hand():
  rewards = np.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.2, 0.4, 0.9]])
  got = np.asarray(losses.grpo_advantages(jnp.asarray(rewards)))
  for b in range(3):
    mean = sum(rewards[b]) / 4
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards[b]) / 3)
    np.testing.assert_allclose(got[b], [(r - mean) / (std + losses.GRPO_EPS) for r in rewards[b]],
                               rtol=1e-5, atol=1e-7)
  assert np.all(got[1] == 0)

  logp = np.array([[0.0, -1.0, -0.5], [0.0, -0.2, -3.0]])
  old = np.array([[0.0, -1.3, -0.5], [0.0, -0.2, -2.0]])
  ref = np.array([[0.0, -0.9, -0.7], [0.0, -0.4, -2.5]])
  mask = np.array([[0, 1, 1], [0, 1, 0]])
  advantages = np.array([0.8, -1.1])
  eps, beta = 0.2, 0.05
  per_sequence, kls = [], []
  for b in range(2):
    terms, kl_terms = [], []
    for t in range(3):
      if mask[b, t]:
        ratio = math.exp(logp[b, t] - old[b, t])
        a = advantages[b]
        surrogate = -min(ratio * a, min(max(ratio, 1 - eps), 1 + eps) * a)
        k3 = math.exp(ref[b, t] - logp[b, t]) - (ref[b, t] - logp[b, t]) - 1
        terms.append(surrogate + beta * k3)
        kl_terms.append(k3)
    per_sequence.append(np.mean(terms))
    kls.append(np.mean(kl_terms))
  loss, _, kl = losses.grpo_loss(logp, old, ref, advantages, mask, eps, beta, 'k3')
  np.testing.assert_allclose(float(loss), np.mean(per_sequence), rtol=1e-6)
  np.testing.assert_allclose(float(kl), np.mean(kls), rtol=1e-6)


def test_reward_model_loss_by_hand():
  from research.model import Transformer, default_model_config
  from research.model.init import init_params
  from research.posttrain import reward_model, steps
  config = default_model_config()
  config.update(vocab_size=13, d_model=8, num_layers=1, num_heads=2, num_kv_heads=2, d_ff=16,
                max_seq_len=8)
  rng = np.random.default_rng(4)
  params = {'backbone': init_params(config, 0),
            'head': {'kernel': jnp.asarray(rng.normal(size=(8, 1)), jnp.float32),
                     'bias': jnp.asarray([0.3], jnp.float32)}}
  batch = {'chosen': rng.integers(0, 13, (2, 6)), 'rejected': rng.integers(0, 13, (2, 6)),
           'chosen_mask': np.array([[0, 0, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1]]),
           'rejected_mask': np.array([[0, 0, 1, 1, 1, 0], [0, 1, 0, 0, 0, 0]])}
  hidden, _ = Transformer(config).apply({'params': params['backbone']},
                                        np.concatenate([batch['chosen'], batch['rejected']]),
                                        return_hidden=True)
  hidden = np.asarray(hidden)
  kernel, bias = np.asarray(params['head']['kernel'])[:, 0], 0.3
  scores = []
  for row, mask in enumerate(np.concatenate([batch['chosen_mask'], batch['rejected_mask']])):
    last = max(t for t in range(6) if mask[t])
    scores.append(float(hidden[row, last] @ kernel + bias))
  margins = [scores[0] - scores[2], scores[1] - scores[3]]
  metrics = steps.reward_pair_metrics(config, params, batch)
  np.testing.assert_allclose(float(metrics['loss']),
                             np.mean([math.log1p(math.exp(-m)) for m in margins]), rtol=1e-5)
  assert float(metrics['preference_accuracy']) == np.mean([m > 0 for m in margins])
  np.testing.assert_allclose(reward_model.sequence_scores(config, params, batch['chosen'],
                                                          batch['chosen_mask']), scores[:2],
                             rtol=1e-5, atol=1e-6)
