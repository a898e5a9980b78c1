"""Chunked output layer + cross-entropy: the plain path's loss and gradients, in less memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.config import base_config
from research.train.fused_loss import chunk_length, fused_cross_entropy
from research.train.optimizer import make_optimizer
from research.train.state import init_state
from research.train.step import make_train_step


def numpy_loss_and_grads(x_BxTxD, w_DxV, targets_BxT, z_loss):
  """Float64 closed form: loss = mean(lse - logit[target]) + z mean(lse^2), and its gradients."""
  x, w = x_BxTxD.astype(np.float64), w_DxV.astype(np.float64)
  logits = np.einsum('btd,dv->btv', x, w)
  top = logits.max(-1, keepdims=True)
  lse = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
  probs = np.exp(logits - lse[..., None])
  one_hot = np.eye(w.shape[1])[targets_BxT]
  n = targets_BxT.size
  nll = np.mean(lse - np.take_along_axis(logits, targets_BxT[..., None], -1)[..., 0])
  loss = nll + z_loss * np.mean(lse ** 2)
  dlogits = (probs * (1 + 2 * z_loss * lse[..., None]) - one_hot) / n
  return loss, nll, np.einsum('btv,dv->btd', dlogits, w), np.einsum('btd,btv->dv', x, dlogits)


@pytest.mark.parametrize('chunk_len', [1, 4, 12])
@pytest.mark.parametrize('z_loss', [0.0, 1e-2])
def test_matches_float64_closed_form(chunk_len, z_loss):
  rng = np.random.default_rng(chunk_len)
  b, t, d, v = 3, 12, 8, 37
  x = rng.normal(size=(b, t, d)).astype(np.float32)
  w = rng.normal(size=(d, v)).astype(np.float32)
  targets = rng.integers(0, v, (b, t)).astype(np.int32)
  loss_fn = lambda x, w: fused_cross_entropy(x, w, jnp.asarray(targets), chunk_len, z_loss)
  (loss, nll), (dx, dw) = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))(x, w)
  want_loss, want_nll, want_dx, want_dw = numpy_loss_and_grads(x, w, targets, z_loss)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
  np.testing.assert_allclose(nll, want_nll, rtol=1e-6)
  np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(dw, want_dw, rtol=1e-5, atol=1e-8)


def test_second_output_is_a_metric_with_zero_gradient():
  rng = np.random.default_rng(0)
  x, w = rng.normal(size=(2, 4, 3)), rng.normal(size=(3, 5))
  targets = jnp.asarray(rng.integers(0, 5, (2, 4)))
  dx = jax.grad(lambda x: fused_cross_entropy(x, w, targets, 2)[1])(x)
  assert not np.any(dx)


def test_chunk_length_is_the_largest_divisor_within_the_limit():
  assert chunk_length(256, 32) == 32
  assert chunk_length(100, 32) == 25
  assert chunk_length(17, 32) == 17
  assert chunk_length(17, 8) == 1
  with pytest.raises(ValueError, match='chunk_len=5 must divide the sequence length 12'):
    fused_cross_entropy(jnp.ones((1, 12, 2)), jnp.ones((2, 3)), jnp.zeros((1, 12), jnp.int32), 5)


def step_config(tied: bool, loss_chunk_len: int, z_loss: float = 0.0):
  c = base_config()
  c.model.update(vocab_size=512, d_model=32, num_layers=2, num_heads=2, num_kv_heads=2, d_ff=64,
                 max_seq_len=64, tied_embedding=tied)
  c.train.update(batch_size=4, z_loss=z_loss, loss_chunk_len=loss_chunk_len)
  return c


def one_step(config, grad_accum_steps: int = 1):
  """Params and metrics after one AdamW step on a fresh random batch."""
  optimizer = make_optimizer(config.train)
  step = jax.jit(make_train_step(config.model, optimizer, config.train.z_loss, grad_accum_steps,
                                 config.train.loss_chunk_len))
  rng = np.random.default_rng(1)
  batch = {k: jnp.asarray(rng.integers(0, config.model.vocab_size, (4, 64)), jnp.int32)
           for k in ('inputs', 'targets')}
  state, metrics = step(init_state(config.model, optimizer, seed=0), batch)
  return state.params, metrics


@pytest.mark.parametrize('tied, z_loss, accum', [(True, 0.0, 1), (False, 1e-3, 1), (True, 0.0, 2)])
def test_train_step_matches_the_materialised_logits_path(tied, z_loss, accum):
  params_0, metrics_0 = one_step(step_config(tied, 0, z_loss), accum)
  params_c, metrics_c = one_step(step_config(tied, 16, z_loss), accum)
  for name in ('loss', 'total_loss', 'grad_norm'):
    np.testing.assert_allclose(metrics_c[name], metrics_0[name], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               params_c, params_0)


def test_train_step_needs_less_memory_than_the_logits():
  """The plain path keeps [B, T, V] float32 logits and their gradient; the chunked one does not."""
  def temp_bytes(loss_chunk_len):
    config = step_config(True, loss_chunk_len)
    config.model.vocab_size = 8192
    optimizer = make_optimizer(config.train)
    step = jax.jit(make_train_step(config.model, optimizer, 0.0, 1, loss_chunk_len))
    state = jax.eval_shape(lambda: init_state(config.model, optimizer, seed=0))
    tokens = jax.ShapeDtypeStruct((4, 64), jnp.int32)
    compiled = step.lower(state, {'inputs': tokens, 'targets': tokens}).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  logits_bytes = 4 * 64 * 8192 * 4
  assert temp_bytes(0) - temp_bytes(8) > logits_bytes
