"""Induction heads (Olsson et al. 2022): attention to the token after an earlier occurrence of the
current token, measured on random tokens repeated twice; and the in-context-learning score."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from research.interp.capture import prepare
from research.interp.streams import attention_patterns
from research.model import Transformer


def repeated_random_tokens(vocab_size: int, seq_len: int, batch: int = 8,
                           seed: int = 0) -> np.ndarray:
  """int32 [B, 2 * seq_len]: `seq_len` tokens drawn uniformly from the vocabulary, then again."""
  if seq_len < 2 or batch < 1:
    raise ValueError(f'seq_len={seq_len}, batch={batch}: need seq_len >= 2 and batch >= 1')
  half_BxT = np.random.default_rng(seed).integers(0, vocab_size, (batch, seq_len))
  return np.concatenate([half_BxT, half_BxT], axis=1).astype(np.int32)


def induction_scores_from(patterns_LxBxNxTxT, seq_len: int) -> np.ndarray:
  """float32 [L, N]: mean attention from each token of the second copy (position i >= seq_len)
  to the token after its first occurrence (position i - seq_len + 1)."""
  queries = np.arange(seq_len, 2 * seq_len)
  patterns = np.asarray(patterns_LxBxNxTxT)
  return patterns[:, :, :, queries, queries - seq_len + 1].mean(axis=(1, 3)).astype(np.float32)


def induction_scores(model_config: ml_collections.ConfigDict, params, seq_len: int,
                     batch: int = 8, seed: int = 0) -> np.ndarray:
  """float32 [L, H]: each head's induction score on `batch` sequences of `seq_len` random tokens
  repeated twice (2 * seq_len <= model.max_seq_len); 1 is a perfect induction head."""
  if 2 * seq_len > model_config.max_seq_len:
    raise ValueError(f'seq_len={seq_len}: the repeated sequence of {2 * seq_len} tokens exceeds '
                     f'model.max_seq_len={model_config.max_seq_len}')
  tokens_BxT = repeated_random_tokens(model_config.vocab_size, seq_len, batch, seed)
  return induction_scores_from(attention_patterns(model_config, params, tokens_BxT), seq_len)


@functools.partial(jax.jit, static_argnums=0)
def _nll(model_config, params, tokens_BxT):
  logits_BxTxV = Transformer(model_config).apply({'params': params}, tokens_BxT)
  return optax.softmax_cross_entropy_with_integer_labels(
      logits_BxTxV[:, :-1].astype(jnp.float32), tokens_BxT[:, 1:])


def next_token_loss(model_config: ml_collections.ConfigDict, params, tokens_BxT) -> np.ndarray:
  """float32 [B, T - 1]: nats of predicting token t + 1 from tokens 0..t."""
  return np.asarray(_nll(*prepare(model_config, params, tokens_BxT)))


def in_context_learning_score(model_config: ml_collections.ConfigDict, params, tokens_BxT,
                              early: int, late: int) -> float:
  """Mean loss of the token at position `late` minus that at position `early` (nats; Olsson et al.
  use 500 and 50): negative when later context helps prediction."""
  t = np.shape(tokens_BxT)[1]
  if not 1 <= early < late < t:
    raise ValueError(f'early={early}, late={late}: need 1 <= early < late < {t} (the length)')
  nll_BxT = next_token_loss(model_config, params, tokens_BxT)
  return float(nll_BxT[:, late - 1].mean() - nll_BxT[:, early - 1].mean())
