"""Log-likelihoods of token sequences under a model, batched into a few compiled shapes.

Every evaluation here (bits per byte, the probes, the lm-evaluation-harness adapter) scores text
through `score_tokens`: rows are right-padded to a multiple of LENGTH_BUCKET and batches filled up
to `batch_size`, so a whole evaluation compiles one program per length bucket.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.data import tokenizer as tokenizer_lib
from research.inference.params import prepare_params
from research.model import Transformer

LENGTH_BUCKET = 16


@dataclasses.dataclass(frozen=True)
class Scored:
  """Per row: the summed log-probability (nats) of the scored targets, how many there were, and
  whether each scored target was the model's top (greedy) choice."""
  logprob: np.ndarray  # float64 [R]
  count: np.ndarray  # int [R]
  greedy: np.ndarray  # bool [R]


@functools.partial(jax.jit, static_argnums=0)
def _target_logprobs(model_config, params, inputs_BxT, targets_BxT):
  """float32 log p(target) [B, T] and whether the target is the argmax [B, T]."""
  logits_BxTxV = Transformer(model_config).apply({'params': params}, inputs_BxT)
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32), axis=-1)
  logp_BxT = jnp.take_along_axis(logp_BxTxV, targets_BxT[..., None], axis=-1)[..., 0]
  return logp_BxT, jnp.argmax(logits_BxTxV, axis=-1) == targets_BxT


def score_tokens(model_config: ml_collections.ConfigDict, params, sequences, num_scored,
                 batch_size: int = 8) -> Scored:
  """Scores the last `num_scored[r]` tokens of each token sequence r given everything before it.

  A sequence of n tokens is read as inputs `seq[:-1]` predicting targets `seq[1:]`; it must hold
  at most model.max_seq_len + 1 tokens, and 1 <= num_scored[r] <= n - 1.
  """
  c = model_config
  params = prepare_params(c, params)
  frozen = ml_collections.FrozenConfigDict(c)
  sequences = [np.asarray(s, np.int32) for s in sequences]
  num_scored = np.asarray(num_scored, np.int64)
  if len(num_scored) != len(sequences):
    raise ValueError(f'num_scored: {len(num_scored)} counts for {len(sequences)} sequences')
  for r, (seq, n) in enumerate(zip(sequences, num_scored)):
    if not 2 <= len(seq) <= c.max_seq_len + 1 or not 1 <= n <= len(seq) - 1:
      raise ValueError(f'sequences[{r}]: {len(seq)} tokens scoring the last {n}; need 2..'
                       f'model.max_seq_len+1={c.max_seq_len + 1} tokens and 1..len-1 scored')
  logprob, greedy = np.zeros(len(sequences)), np.zeros(len(sequences), bool)
  order = sorted(range(len(sequences)), key=lambda r: len(sequences[r]))  # similar lengths batch
  for start in range(0, len(order), batch_size):
    rows = order[start:start + batch_size]
    longest = max(len(sequences[r]) - 1 for r in rows)
    t = min(-(-longest // LENGTH_BUCKET) * LENGTH_BUCKET, c.max_seq_len)
    inputs_BxT = np.zeros((batch_size, t), np.int32)
    targets_BxT = np.zeros((batch_size, t), np.int32)
    scored_BxT = np.zeros((batch_size, t), bool)
    for i, r in enumerate(rows):
      seq, n = sequences[r], num_scored[r]
      inputs_BxT[i, :len(seq) - 1], targets_BxT[i, :len(seq) - 1] = seq[:-1], seq[1:]
      scored_BxT[i, len(seq) - 1 - n:len(seq) - 1] = True
    logp_BxT, top_BxT = jax.device_get(_target_logprobs(frozen, params, inputs_BxT, targets_BxT))
    for i, r in enumerate(rows):
      logprob[r] = np.sum(logp_BxT[i][scored_BxT[i]], dtype=np.float64)
      greedy[r] = bool(np.all(top_BxT[i][scored_BxT[i]]))
  return Scored(logprob=logprob, count=num_scored, greedy=greedy)


def score_continuations(model_config: ml_collections.ConfigDict, params, context_tokens,
                        continuation_tokens, batch_size: int = 8) -> Scored:
  """Scores each continuation (token list) after its context (token list, non-empty); contexts
  are cut from the left so that context + continuation fits the model's context window."""
  limit = model_config.max_seq_len + 1
  sequences, counts = [], []
  for r, (context, continuation) in enumerate(zip(context_tokens, continuation_tokens)):
    if not len(context) or not len(continuation) or len(continuation) >= limit:
      raise ValueError(f'continuation_tokens[{r}]: need a non-empty context and 1..'
                       f'{limit - 1} continuation tokens, got {len(context)} and '
                       f'{len(continuation)}')
    sequences.append((list(context) + list(continuation))[-limit:])
    counts.append(len(continuation))
  return score_tokens(model_config, params, sequences, counts, batch_size)


def score_texts(model_config: ml_collections.ConfigDict, params, tokenizer, contexts,
                continuations, batch_size: int = 8) -> Scored:
  """`score_continuations` of text: context and continuation are tokenized separately (no
  special tokens) and joined, so the scored tokens are exactly the continuation's."""
  encoded = tokenizer_lib.encode_texts(tokenizer, list(contexts) + list(continuations))
  n = len(encoded) // 2
  return score_continuations(model_config, params, encoded[:n], encoded[n:], batch_size)
