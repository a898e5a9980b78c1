"""Speculative decoding (Leviathan et al. 2023; Chen et al. 2023): a draft proposes, a target checks.

Each round the draft samples k tokens x_1..x_k from its distributions q_1..q_k; the target scores
all of them in one forward pass, giving p_1..p_{k+1}. Token x_i is accepted with probability
min(1, p_i(x_i) / q_i(x_i)); at the first rejection the next token is drawn from
norm(max(0, p_i - q_i)), and if all k are accepted a bonus token is drawn from p_{k+1}. The output
then follows the target's distribution exactly (p and q are the post-temperature/top-k/top-p
distributions, so the target's sampling settings are what is preserved). Rows advance by their own
accepted counts: every row keeps its own cache position.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.inference import cache as cache_lib
from research.inference.decoder import RowSampling, decoder_for, row_sampling
from research.inference.generation import (CACHE_BUCKET, PROMPT_BUCKET, assemble, check_length,
                                           check_prompt, round_up)
from research.inference.params import prepare_params


@dataclasses.dataclass
class SpeculativeStats:
  """Counts over rows still generating: draft tokens proposed and accepted, rounds run."""
  rounds: int = 0
  proposed: int = 0
  accepted: int = 0
  row_rounds: int = 0  # sum over rounds of rows still generating

  @property
  def acceptance_rate(self) -> float:
    return self.accepted / max(self.proposed, 1)

  @property
  def tokens_per_round(self) -> float:
    """Mean tokens a row gains per target pass (accepted + 1)."""
    return (self.accepted + self.row_rounds) / max(self.row_rounds, 1)


def _keys(rows: RowSampling, round_index, salt: int):
  base = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), round_index))(rows.seed)
  return jax.vmap(lambda k: jax.random.fold_in(k, salt))(base)


def _probabilities_BxTxV(rows: RowSampling, logits_BxTxV):
  return jax.vmap(rows.probabilities, in_axes=1, out_axes=1)(logits_BxTxV)


def _draw(keys_B, probs_BxV, rows: RowSampling):
  """A token per row from `probs_BxV`; argmax (no random numbers) when every row is greedy."""
  draw = lambda p: jax.vmap(jax.random.categorical)(keys_B, jnp.log(p)).astype(jnp.int32)
  argmax = lambda p: jnp.argmax(p, axis=-1).astype(jnp.int32)
  return jax.lax.cond(jnp.any(rows.temperature > 0), draw, argmax, probs_BxV)


def accept_and_correct(x_BxA, q_BxAxV, p_BxA1xV, uniform_BxA, keys_B, rows: RowSampling):
  """The rejection-sampling rule -> (accepted count n [B], next token [B]).

  Accept x_i while u_i q_i(x_i) < p_i(x_i); the next token comes from norm(max(0, p - q)) at the
  first rejection, or from p_{k+1} when all k were accepted.
  """
  k = x_BxA.shape[1]
  p_x_BxA = jnp.take_along_axis(p_BxA1xV[:, :k], x_BxA[..., None], axis=-1)[..., 0]
  q_x_BxA = jnp.take_along_axis(q_BxAxV, x_BxA[..., None], axis=-1)[..., 0]
  accept_BxA = uniform_BxA * q_x_BxA < p_x_BxA
  n_B = jnp.sum(jnp.cumprod(accept_BxA, axis=1), axis=1)
  q_pad_BxA1xV = jnp.concatenate([q_BxAxV, jnp.zeros_like(q_BxAxV[:, :1])], axis=1)
  pick = lambda a: jnp.take_along_axis(a, n_B[:, None, None], axis=1)[:, 0]
  p_BxV = pick(p_BxA1xV)
  residual_BxV = jnp.maximum(p_BxV - pick(q_pad_BxA1xV), 0.0)
  residual_BxV = jnp.where(jnp.sum(residual_BxV, -1, keepdims=True) > 0, residual_BxV, p_BxV)
  next_B = _draw(keys_B, residual_BxV / residual_BxV.sum(-1, keepdims=True), rows)
  return n_B.astype(jnp.int32), next_B


@functools.lru_cache(maxsize=8)
def _round_for(target_json: str, draft_json: str, k: int):
  target = decoder_for(ml_collections.ConfigDict(json.loads(target_json)))
  draft = decoder_for(ml_collections.ConfigDict(json.loads(draft_json)))

  @functools.partial(jax.jit, donate_argnums=(2, 3, 8))
  def one_round(target_params, draft_params, target_cache, draft_cache, last_B, position_B,
                rows: RowSampling, round_index, out_BxM, generated_B, done_B, stop_Y, limit):
    """k draft steps (+1 to cache x_k), one target pass over k+1 tokens, accept, write output."""
    b = last_B.shape[0]
    clamp = lambda pos: jnp.minimum(pos, limit - 1)
    token_B, drafts, qs = last_B, [], []
    for i in range(k + 1):
      logits_Bx1xV, draft_cache = draft.apply(draft_params, draft_cache, token_B[:, None],
                                              clamp(position_B + i)[:, None])
      if i < k:
        q_BxV = rows.probabilities(logits_Bx1xV[:, 0])
        token_B = _draw(_keys(rows, round_index, i), q_BxV, rows)
        drafts.append(token_B)
        qs.append(q_BxV)
    x_BxA, q_BxAxV = jnp.stack(drafts, 1), jnp.stack(qs, 1)
    inputs_BxA1 = jnp.concatenate([last_B[:, None], x_BxA], axis=1)
    positions_BxA1 = clamp(position_B[:, None] + jnp.arange(k + 1))
    logits_BxA1xV, target_cache = target.apply(target_params, target_cache, inputs_BxA1,
                                               positions_BxA1)
    p_BxA1xV = _probabilities_BxTxV(rows, logits_BxA1xV)
    uniform_BxA = jax.vmap(lambda key: jax.random.uniform(key, (k,)))(
        _keys(rows, round_index, k + 1))
    n_B, next_B = accept_and_correct(x_BxA, q_BxAxV, p_BxA1xV, uniform_BxA,
                                     _keys(rows, round_index, k + 2), rows)
    # Emitted this round: x_1..x_n, then the corrected (or bonus) token.
    j_A1 = jnp.arange(k + 1)
    emitted_BxA1 = jnp.where(j_A1 < n_B[:, None], jnp.pad(x_BxA, ((0, 0), (0, 1))),
                             next_B[:, None])
    valid_BxA1 = (j_A1 <= n_B[:, None]) & ~done_B[:, None]
    slots_BxA1 = jnp.where(valid_BxA1, generated_B[:, None] + j_A1, out_BxM.shape[1])
    out_BxM = out_BxM.at[jnp.arange(b)[:, None], slots_BxA1].set(emitted_BxA1, mode='drop')
    active_B = ~done_B
    stats = (jnp.sum(jnp.where(active_B, n_B, 0)), jnp.sum(active_B))
    generated_B = generated_B + jnp.where(active_B, n_B + 1, 0)
    hit_stop_B = jnp.any(valid_BxA1 & jnp.isin(emitted_BxA1, stop_Y), axis=1)
    return (target_cache, draft_cache, next_B, position_B + n_B + 1, out_BxM, generated_B,
            done_B | hit_stop_B, stats)

  return one_round


def speculative_generate(target_config: ml_collections.ConfigDict, target_params,
                         draft_config: ml_collections.ConfigDict, draft_params, prompt_tokens_BxT,
                         max_new_tokens: int, num_draft: int = 4, temperature=0.0, top_k=0,
                         top_p=1.0, seed=0, *, prompt_lengths=None, stop_tokens=(),
                         pad_id: int = 0):
  """Like `generate` with the target, sped up by the draft -> (int32 [B, T + N], SpeculativeStats).

  The draft must share the target's tokenizer (same vocab_size). At temperature 0 the tokens equal
  the target's greedy decoding; otherwise they are distributed as the target's sampling.
  """
  if draft_config.vocab_size != target_config.vocab_size:
    raise ValueError(f'draft_config.vocab_size={draft_config.vocab_size} differs from the '
                     f'target\'s {target_config.vocab_size}: they must share a tokenizer')
  if not isinstance(num_draft, (int, np.integer)) or num_draft <= 0:
    raise ValueError(f'num_draft={num_draft!r} must be a positive integer')
  if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens <= 0:
    raise ValueError(f'max_new_tokens={max_new_tokens!r} must be a positive integer')
  target_params = prepare_params(target_config, target_params)
  draft_params = prepare_params(draft_config, draft_params)
  prompt, lengths = check_prompt(target_config, prompt_tokens_BxT, prompt_lengths)
  b, t = prompt.shape
  for name, config in (('max_new_tokens', target_config), ('draft_config.max_seq_len',
                                                           draft_config)):
    check_length(config, t + max_new_tokens, name)
  rows = row_sampling(b, temperature, top_k, top_p, seed)
  k = int(num_draft)
  limit = min(target_config.max_seq_len, draft_config.max_seq_len)
  slots = min(round_up(t + max_new_tokens + k + 1, CACHE_BUCKET), limit)
  padded_t = min(round_up(t, PROMPT_BUCKET), slots)
  padded = jnp.asarray(np.pad(prompt, ((0, 0), (0, padded_t - t)), constant_values=pad_id))
  positions_BxT = jnp.broadcast_to(jnp.arange(padded_t, dtype=jnp.int32), (b, padded_t))
  caches = []
  for config, params in ((target_config, target_params), (draft_config, draft_params)):
    cache_lib.check_rewind(config, k, 'num_draft')
    cache_lib.check_rewind(config, padded_t - int(lengths.min()) + 1, 'prompt_lengths')
    cache = cache_lib.init_cache(config, b, slots)
    caches.append(decoder_for(config).extend(params, cache, padded, positions_BxT)[1])
  target_cache, draft_cache = caches
  one_round = _round_for(target_config.to_json(), draft_config.to_json(), k)
  last_B = jnp.asarray(prompt[np.arange(b), lengths - 1])
  position_B = jnp.asarray(lengths - 1)
  out_BxM = jnp.full((b, max_new_tokens + k + 1), pad_id, jnp.int32)
  generated_B = jnp.zeros((b,), jnp.int32)
  done_B = jnp.zeros((b,), bool)
  stop_Y = jnp.asarray(list(stop_tokens) or [-1], jnp.int32)
  stats = SpeculativeStats()
  while True:
    (target_cache, draft_cache, last_B, position_B, out_BxM, generated_B, done_B,
     (accepted, active)) = one_round(target_params, draft_params, target_cache, draft_cache,
                                     last_B, position_B, rows, stats.rounds, out_BxM,
                                     generated_B, done_B, stop_Y, slots)
    done_B = done_B | (generated_B >= max_new_tokens)
    stats.rounds += 1
    stats.accepted += int(accepted)
    stats.proposed += k * int(active)
    stats.row_rounds += int(active)
    if bool(jnp.all(done_B)):
      break
  generated_BxM = np.asarray(out_BxM[:, :max_new_tokens])
  if stop_tokens:  # tokens after a row's first stop token become padding
    stopped_BxM = np.cumsum(np.isin(generated_BxM, list(stop_tokens)), axis=1)
    after_BxM = (stopped_BxM - np.isin(generated_BxM, list(stop_tokens))) > 0
    generated_BxM = np.where(after_BxM, pad_id, generated_BxM)
  return assemble(prompt, lengths, generated_BxM, pad_id), stats
