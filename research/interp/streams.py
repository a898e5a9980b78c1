"""The public views of a forward pass: attention probabilities and the residual stream."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections

from research.interp.capture import forward, prepare
from research.model.attention import attention_probabilities


def patterns_from(model_config: ml_collections.ConfigDict, activations: dict):
  """float32 [L, B, N, T, T] post-softmax attention of every layer and query head, from the
  captured queries and keys (the fused kernels never materialise it)."""
  q_LxBxTxNxH, k_LxBxTxKxH = activations['queries'], activations['keys']
  probs = jax.vmap(lambda q, k: attention_probabilities(q, k, model_config.sliding_window))
  probs_LxBxKxGxTxS = probs(q_LxBxTxNxH, k_LxBxTxKxH)
  l, b, k, g, t, s = probs_LxBxKxGxTxS.shape
  return probs_LxBxKxGxTxS.reshape(l, b, k * g, t, s)


def attention_patterns(model_config: ml_collections.ConfigDict, params, tokens_BxT) -> jax.Array:
  """float32 [L, B, H, T, T]: the post-softmax attention probabilities of every layer and head
  (H query heads; entry [l, b, h, i, j] is how much position i attends to position j)."""
  return _patterns(*prepare(model_config, params, tokens_BxT))


def stream_from(activations: dict) -> jax.Array:
  """[L + 1, B, T, D]: the input of each block, then the last block's output."""
  return jnp.concatenate([activations['resid_pre'], activations['resid_final'][None]], axis=0)


def residual_stream(model_config: ml_collections.ConfigDict, params, tokens_BxT) -> jax.Array:
  """float32 [L + 1, B, T, D]: entry l < L is the input of block l (entry 0 the embeddings),
  entry L the output of the last block, before the final norm."""
  return _stream(*prepare(model_config, params, tokens_BxT))


@functools.partial(jax.jit, static_argnums=0)
def _patterns(model_config, params, tokens_BxT):
  return patterns_from(model_config, forward(model_config, params, tokens_BxT))


@functools.partial(jax.jit, static_argnums=0)
def _stream(model_config, params, tokens_BxT):
  return stream_from(forward(model_config, params, tokens_BxT))
