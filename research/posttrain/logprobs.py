"""Log-probabilities, entropies and KL of the training model, aligned with the tokens they score.

Column t of every [B, T] result concerns token t, predicted from tokens :t (the logits of
position t - 1); column 0, which nothing predicts, is 0.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.model import Transformer


def _shift(x_BxT):
  """[B, T - 1] values of positions 1..T-1 -> [B, T] with a 0 in column 0."""
  return jnp.pad(x_BxT, ((0, 0), (1, 0)))


def token_logprobs_from_logits(logits_BxTxV, tokens_BxT):
  """[B, T] float32: log p(tokens[:, t] | tokens[:, :t]) in column t >= 1, 0 in column 0."""
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV[:, :-1].astype(jnp.float32), axis=-1)
  return _shift(jnp.take_along_axis(logp_BxTxV, tokens_BxT[:, 1:, None], axis=-1)[..., 0])


def token_entropy_from_logits(logits_BxTxV):
  """[B, T] float32: entropy of the distribution that token t was drawn from (column 0: 0)."""
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV[:, :-1].astype(jnp.float32), axis=-1)
  return _shift(-jnp.sum(jnp.exp(logp_BxTxV) * logp_BxTxV, axis=-1))


def token_kl_from_logits(logits_BxTxV, reference_logits_BxTxV):
  """[B, T] float32: the exact KL(pi || ref) over the vocabulary of the distributions of token t."""
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV[:, :-1].astype(jnp.float32), axis=-1)
  logq_BxTxV = jax.nn.log_softmax(reference_logits_BxTxV[:, :-1].astype(jnp.float32), axis=-1)
  return _shift(jnp.sum(jnp.exp(logp_BxTxV) * (logp_BxTxV - logq_BxTxV), axis=-1))


def token_logprobs(model_config: ml_collections.ConfigDict, params, tokens_BxT):
  """[B, T] float32 log-probabilities of each token under `Transformer(model_config)`."""
  logits_BxTxV = Transformer(model_config).apply({'params': params}, tokens_BxT)
  return token_logprobs_from_logits(logits_BxTxV, tokens_BxT)


def masked_sum(x_BxT, loss_mask_BxT):
  """[B]: the sum over t >= 1 of mask[b, t] * x[b, t] (mask column 0 is ignored)."""
  return jnp.sum(x_BxT[:, 1:] * loss_mask_BxT[:, 1:].astype(jnp.float32), axis=1)


@functools.lru_cache(maxsize=16)
def _compiled(config_json: str):
  model_config = ml_collections.ConfigDict(json.loads(config_json))
  return jax.jit(lambda params, tokens_BxT, mask_BxT: masked_sum(
      token_logprobs(model_config, params, tokens_BxT), mask_BxT))


def sequence_logprobs(model_config: ml_collections.ConfigDict, params, tokens_BxT,
                      loss_mask_BxT):
  """float32 [B]: sum over t >= 1 of loss_mask[b, t] * log p(tokens[b, t] | tokens[b, :t]).

  `params` are the Transformer's (`{'params': ...}` unwrapped); mask column 0 is ignored.
  """
  tokens = np.asarray(tokens_BxT)
  mask = np.asarray(loss_mask_BxT)
  if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(f'tokens_BxT: expected integer token ids of shape [batch, length], got '
                     f'{tokens.dtype} {tokens.shape}')
  if mask.shape != tokens.shape:
    raise ValueError(f'loss_mask_BxT: shape {mask.shape} differs from tokens_BxT {tokens.shape}')
  return _compiled(model_config.to_json())(params, jnp.asarray(tokens, jnp.int32),
                                           jnp.asarray(mask, jnp.float32))
