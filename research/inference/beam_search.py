"""Beam search with length normalisation and EOS handling (the T5X / Hugging Face scheme).

Each step expands the W alive beams by every token, keeps the best 2W candidates, moves those
ending in EOS into a pool of W finished beams (scored log p / length ** length_penalty, length =
new tokens including EOS), and keeps the best W others alive. At the last step every candidate
finishes. The search stops early once no alive beam can beat the worst finished one.
"""

from __future__ import annotations

import functools
import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.inference import cache as cache_lib
from research.inference.decoder import decoder_for
from research.inference.generation import CACHE_BUCKET, check_length, check_prompt, round_up
from research.inference.params import prepare_params

NEG_INF = -jnp.inf


class Beams(NamedTuple):
  """Alive and finished beams of each batch row: scores [B, W], new tokens [B, W, M]."""
  alive_logp: jax.Array  # summed log-probabilities, -inf for empty beams
  alive_BxWxM: jax.Array
  finished_score: jax.Array  # length-normalised, -inf for empty slots
  finished_BxWxM: jax.Array
  parents: jax.Array  # [B, W]: which previous alive beam each alive beam extends
  tokens: jax.Array  # [B, W]: the token it was extended with


def _normalise(logp, length, length_penalty):
  return logp / jnp.asarray(length, jnp.float32) ** length_penalty


def _top(pool_scores_Bx3W, pool_Bx3WxM, w):
  """The `w` best of a pool of beams (the finished ones and the finishing candidates)."""
  scores_BxW, idx_BxW = jax.lax.top_k(pool_scores_Bx3W, w)
  return scores_BxW, jnp.take_along_axis(pool_Bx3WxM, idx_BxW[..., None], axis=1)


@functools.partial(jax.jit, static_argnames=('eos_id', 'length_penalty'))
def select(beams: Beams, logp_BxWxV, t, eos_id, length_penalty):
  """Step t: expand alive beams by every token, update the finished pool and the alive beams."""
  b, w, v = logp_BxWxV.shape
  n = beams.alive_BxWxM.shape[-1]
  cand_Bx2W, idx_Bx2W = jax.lax.top_k(
      (beams.alive_logp[:, :, None] + logp_BxWxV).reshape(b, w * v), 2 * w)
  parent_Bx2W, token_Bx2W = idx_Bx2W // v, (idx_Bx2W % v).astype(jnp.int32)
  seqs_Bx2WxM = jnp.take_along_axis(beams.alive_BxWxM, parent_Bx2W[..., None], axis=1)
  seqs_Bx2WxM = seqs_Bx2WxM.at[:, :, t].set(token_Bx2W)
  ends_Bx2W = (token_Bx2W == eos_id) if eos_id is not None else jnp.zeros_like(token_Bx2W, bool)
  finishing_Bx2W = ends_Bx2W | (t == n - 1)
  fin_cand_Bx2W = jnp.where(finishing_Bx2W, _normalise(cand_Bx2W, t + 1, length_penalty), NEG_INF)
  finished_score, finished_BxWxM = _top(
      jnp.concatenate([beams.finished_score, fin_cand_Bx2W], axis=1),
      jnp.concatenate([beams.finished_BxWxM, seqs_Bx2WxM], axis=1), w)
  alive_cand_Bx2W = jnp.where(ends_Bx2W, NEG_INF, cand_Bx2W)
  alive_logp, pick_BxW = jax.lax.top_k(alive_cand_Bx2W, w)
  return Beams(alive_logp, jnp.take_along_axis(seqs_Bx2WxM, pick_BxW[..., None], axis=1),
               finished_score, finished_BxWxM, jnp.take_along_axis(parent_Bx2W, pick_BxW, 1),
               jnp.take_along_axis(token_Bx2W, pick_BxW, 1))


def can_stop(beams: Beams, t, n: int, length_penalty: float) -> bool:
  """True when every row's pool is full and no alive beam can still beat its worst member.

  Log-probabilities only fall, so an alive beam's best reachable score is its current log p
  normalised by the most favourable remaining length.
  """
  lengths = np.arange(t + 2, n + 1, dtype=np.float32)
  if not len(lengths):
    return True
  best = np.max(np.asarray(beams.alive_logp), axis=1)
  reachable = np.max(best[:, None] / lengths[None, :] ** length_penalty, axis=1)
  worst = np.min(np.asarray(beams.finished_score), axis=1)
  return bool(np.all((worst > -np.inf) & (reachable <= worst)))


@functools.lru_cache(maxsize=16)
def _advance_for(config_json: str):
  decoder = decoder_for(ml_collections.ConfigDict(json.loads(config_json)))
  config = decoder.config

  @functools.partial(jax.jit, donate_argnums=(1,))
  def advance(params, cache, parents_BxW, tokens_BxW, position):
    """Reorders the cache to the alive beams' parents and feeds their new tokens."""
    b, w = parents_BxW.shape
    rows_BW = (jnp.arange(b)[:, None] * w + parents_BxW).reshape(-1)
    cache = cache_lib.take_rows(cache, rows_BW, cache_lib.batch_axes(config))
    positions_BWx1 = jnp.full((b * w, 1), position, jnp.int32)
    logits_BWx1xV, cache = decoder.apply(params, cache, tokens_BxW.reshape(-1, 1), positions_BWx1)
    return jax.nn.log_softmax(logits_BWx1xV[:, 0]).reshape(b, w, -1), cache

  return advance


def beam_search(model_config: ml_collections.ConfigDict, params, prompt_tokens_BxT,
                max_new_tokens: int, beam_size: int, length_penalty: float = 1.0,
                eos_id: int | None = None, pad_id: int = 0):
  """-> (int32 [B, W, T + M] sequences, float32 [B, W] scores), best first per prompt; M is
  `max_new_tokens`.

  Scores are log p(new tokens) / (number of new tokens) ** length_penalty; a beam that emitted
  `eos_id` is padded with `pad_id` after it. Fewer than W distinct sequences leave -inf scores.
  """
  c = model_config
  params = prepare_params(c, params)
  prompt, _ = check_prompt(c, prompt_tokens_BxT)
  if not isinstance(beam_size, (int, np.integer)) or beam_size <= 0:
    raise ValueError(f'beam_size={beam_size!r} must be a positive integer')
  if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens <= 0:
    raise ValueError(f'max_new_tokens={max_new_tokens!r} must be a positive integer')
  if eos_id is not None and not 0 <= eos_id < c.vocab_size:
    raise ValueError(f'eos_id={eos_id!r} must be a token id in [0, {c.vocab_size})')
  b, t = prompt.shape
  w, n = beam_size, max_new_tokens
  check_length(c, t + n)
  decoder = decoder_for(c)
  cache = cache_lib.init_cache(c, b, min(round_up(t + n, CACHE_BUCKET), c.max_seq_len))
  positions_BxT = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
  logits_BxTxV, cache = decoder.extend(params, cache, jnp.asarray(prompt), positions_BxT)
  cache = cache_lib.take_rows(cache, jnp.repeat(jnp.arange(b), w), cache_lib.batch_axes(c))
  logp_BxWxV = jnp.broadcast_to(jax.nn.log_softmax(logits_BxTxV[:, -1])[:, None],
                                (b, w, c.vocab_size))
  empty = jnp.full((b, w, n), pad_id, jnp.int32)
  first_beam = jnp.where(jnp.arange(w) == 0, 0.0, NEG_INF)
  beams = Beams(jnp.broadcast_to(first_beam, (b, w)), empty, jnp.full((b, w), NEG_INF), empty,
                jnp.zeros((b, w), jnp.int32), jnp.zeros((b, w), jnp.int32))
  advance = _advance_for(c.to_json())
  for step in range(n):
    beams = select(beams, logp_BxWxV, step, eos_id, float(length_penalty))
    if step == n - 1 or can_stop(beams, step, n, length_penalty):
      break
    logp_BxWxV, cache = advance(params, cache, beams.parents, beams.tokens, t + step)
  prompts_BxWxT = np.broadcast_to(prompt[:, None], (b, w, t))
  sequences = np.concatenate([prompts_BxWxT, np.asarray(beams.finished_BxWxM)], axis=-1)
  return sequences.astype(np.int32), np.asarray(beams.finished_score)
