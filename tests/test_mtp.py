"""Multi-token prediction: head losses against a numpy reference, logged losses in training, and
self-speculative greedy decoding equal to plain greedy decoding."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research.inference import generate, self_speculative_generate
from research.model import Transformer, counting, validate_model_config
from research.model.init import init_params
from research.train.step import make_train_step
from research.train.state import TrainState
from tests.test_inference_cache import init_params as random_params
from tests.test_inference_cache import random_tokens, tiny_config


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_head_losses_match_a_numpy_reference_and_are_logged():
  c = tiny_config(mtp_heads=2)
  params = random_params(c, 0, scale=0.1)
  tokens = random_tokens(c, 0, batch=2, length=9)
  inputs, targets = jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])
  logits, heads = Transformer(c).apply({'params': params}, inputs, return_mtp=True)
  np.testing.assert_allclose(logits, Transformer(c).apply({'params': params}, inputs),
                             rtol=1e-6, atol=1e-6)
  want = {}
  for k, head_logits in enumerate(heads):  # head k at t predicts inputs[t + k + 2]
    logp = _log_softmax(np.asarray(head_logits, np.float64))[:, :8 - (k + 1)]
    tgt = tokens[:, k + 2:]
    want[f'mtp_loss_{k + 2}'] = -np.mean(np.take_along_axis(logp, tgt[..., None], -1))
  main = -np.mean(np.take_along_axis(_log_softmax(np.asarray(logits, np.float64)),
                                     tokens[:, 1:, None], -1))
  optimizer = optax.sgd(0.0)
  for chunk in (0, 4):  # the fused-loss path and the plain one
    step = jax.jit(make_train_step(c, optimizer, loss_chunk_len=chunk, mtp_loss_weight=0.5))
    state = TrainState(step=0, params=params, opt_state=optimizer.init(params))
    _, metrics = step(state, {'inputs': inputs, 'targets': targets})
    for name, value in want.items():
      np.testing.assert_allclose(metrics[name], value, rtol=1e-5)
    np.testing.assert_allclose(metrics['loss'], main, rtol=1e-5)
    np.testing.assert_allclose(metrics['total_loss'], main + 0.5 * np.mean(list(want.values())),
                               rtol=1e-5)


def test_fused_head_losses_give_the_plain_gradients_without_the_heads_logits():
  """With loss_chunk_len the heads' losses are fused too: the same update as the plain path, and
  the step's temporary memory does not grow by a head's [B, T, V] logits."""
  c = tiny_config(mtp_heads=2)
  params = random_params(c, 1, scale=0.1)
  tokens = jnp.asarray(random_tokens(c, 1, batch=2, length=13))
  batch = {'inputs': tokens[:, :-1], 'targets': tokens[:, 1:]}
  optimizer = optax.sgd(1.0)  # new params = params - gradient
  updated = []
  for chunk in (0, 4):
    step = jax.jit(make_train_step(c, optimizer, loss_chunk_len=chunk, mtp_loss_weight=0.5))
    state = TrainState(step=0, params=params, opt_state=optimizer.init(params))
    updated.append(step(state, batch)[0].params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), *updated)

  def temp_bytes(heads):
    big = tiny_config(mtp_heads=heads, vocab_size=8192)
    state = jax.eval_shape(lambda: TrainState(step=0, params=init_params(big),
                                              opt_state=optimizer.init(init_params(big))))
    step = jax.jit(make_train_step(big, optimizer, loss_chunk_len=8))
    tokens = jax.ShapeDtypeStruct((4, 40), jnp.int32)
    compiled = step.lower(state, {'inputs': tokens, 'targets': tokens}).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  # unfused, the heads' logits and gradients add 3.5x one head's [B, T, V] float32 logits
  assert temp_bytes(2) - temp_bytes(0) < 4 * 40 * 8192 * 4


def test_head_params_are_counted_and_bad_values_refused():
  for heads in (1, 3):
    c = tiny_config(mtp_heads=heads, mlp='swiglu')
    assert counting.count_params(init_params(c)) == counting.predict_param_counts(c)
  c = tiny_config(mtp_heads=-1)
  with pytest.raises(ValueError, match='model.mtp_heads'):
    validate_model_config(c)


@pytest.mark.parametrize('overrides', [dict(position='rope'),
                                       dict(position='none', norm='rmsnorm', block_pattern='MA',
                                            mamba_d_state=4)])
def test_self_speculative_greedy_equals_plain_greedy(overrides):
  c = tiny_config(mtp_heads=3, tied_embedding=False, **overrides)
  prompt = random_tokens(c, 1, batch=3, length=7)
  lengths = [7, 4, 6]
  random = random_params(c, 1)  # random heads: nearly every draft is rejected
  # Output columns zero but token 0's: the greedy token is 0 or 1 (the sign of one logit, the
  # others exactly 0), and heads that copy the readout draft it: many drafts are kept.
  agreeing = dict(random, unembed=random['unembed'].at[:, 1:].set(0.0))
  agreeing['mtp'] = dict(random['mtp'])
  for k in range(3):
    agreeing['mtp'][f'head_{k}_mlp'] = jax.tree.map(jnp.zeros_like,
                                                    random['mtp'][f'head_{k}_mlp'])
    agreeing['mtp'][f'head_{k}_final_norm'] = random['final_norm']
  accepted = []
  for params in (random, agreeing):
    want = generate(c, params, prompt, 12, prompt_lengths=lengths)
    got, stats = self_speculative_generate(c, params, prompt, 12, prompt_lengths=lengths)
    np.testing.assert_array_equal(got, want)
    accepted.append(stats.accepted)
  assert accepted[1] > accepted[0] and accepted[1] > 0
  with pytest.raises(ValueError, match='model.mtp_heads=0'):
    self_speculative_generate(tiny_config(), random_params(tiny_config(), 0), prompt, 3)
