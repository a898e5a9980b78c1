"""Self-speculative greedy decoding with multi-token prediction heads (model.mtp_heads > 0).

The heads draft, the model verifies: each round feeds the last token and the A = mtp_heads
drafts of the heads in one cached pass. Draft i is kept while it equals the model's own argmax
after the tokens before it; the model's argmax after the last kept token is emitted too (the
correction, or a bonus when every draft was kept), and the heads at that same position draft the
next round. Every emitted token is thus the model's greedy choice: the output equals plain greedy
decoding, with up to A + 1 tokens per forward pass. Rejected drafts need no undo: a row's cache
(keys and values, or Mamba states, per slot) is simply overwritten from its new position.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.inference import cache as cache_lib
from research.inference.generation import (CACHE_BUCKET, PROMPT_BUCKET, assemble, check_length,
                                           check_prompt, round_up)
from research.inference.params import prepare_params
from research.inference.quantize import model_variables
from research.inference.speculative import SpeculativeStats
from research.model import Transformer


def _argmaxes(logits_BxTxV, head_logits):
  """The model's [B, T] argmax and the heads' [B, T, A] (head k at index k)."""
  main_BxT = jnp.argmax(logits_BxTxV, axis=-1).astype(jnp.int32)
  heads_BxTxA = jnp.stack([jnp.argmax(h, axis=-1) for h in head_logits], axis=-1)
  return main_BxT, heads_BxTxA.astype(jnp.int32)


@functools.lru_cache(maxsize=8)
def _programs_for(config_json: str):
  model = Transformer(ml_collections.ConfigDict(json.loads(config_json)), decode=True)

  def apply(params, cache, tokens_BxT, positions_BxT):
    (logits_BxTxV, heads), updated = model.apply(
        {**model_variables(params), 'cache': cache}, tokens_BxT, positions_BxT,
        return_mtp=True, mutable=['cache'])
    return _argmaxes(logits_BxTxV, heads), updated['cache']

  @functools.partial(jax.jit, donate_argnums=(1,))
  def prefill(params, cache, prompt_BxT, lengths_B):
    """Caches the prompt -> (first token [B], its drafts [B, A], cache)."""
    b, t = prompt_BxT.shape
    positions_BxT = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    (main_BxT, heads_BxTxA), cache = apply(params, cache, prompt_BxT, positions_BxT)
    last_B1 = (lengths_B - 1)[:, None]
    first_B = jnp.take_along_axis(main_BxT, last_B1, axis=1)[:, 0]
    drafts_BxA = jnp.take_along_axis(heads_BxTxA, last_B1[..., None], axis=1)[:, 0]
    return first_B, drafts_BxA, cache

  @functools.partial(jax.jit, donate_argnums=(1, 5))
  def one_round(params, cache, last_B, drafts_BxA, position_B, out_BxM, generated_B, limit):
    """Verify [last, drafts] at position..position+A; write the kept drafts and the model's
    next token; return the next round's inputs."""
    b, a = drafts_BxA.shape
    inputs_BxA1 = jnp.concatenate([last_B[:, None], drafts_BxA], axis=1)
    positions_BxA1 = jnp.minimum(position_B[:, None] + jnp.arange(a + 1), limit - 1)
    (main_BxA1, heads_BxA1xA), cache = apply(params, cache, inputs_BxA1, positions_BxA1)
    keep_BxA = drafts_BxA == main_BxA1[:, :a]
    n_B = jnp.sum(jnp.cumprod(keep_BxA, axis=1), axis=1).astype(jnp.int32)
    pick = lambda x: jnp.take_along_axis(x, n_B.reshape((b,) + (1,) * (x.ndim - 1)), axis=1)[:, 0]
    next_B, next_drafts_BxA = pick(main_BxA1), pick(heads_BxA1xA)
    j_A1 = jnp.arange(a + 1)
    emitted_BxA1 = jnp.where(j_A1 < n_B[:, None], jnp.pad(drafts_BxA, ((0, 0), (0, 1))),
                             next_B[:, None])
    slots_BxA1 = jnp.where(j_A1 <= n_B[:, None], generated_B[:, None] + j_A1, out_BxM.shape[1])
    out_BxM = out_BxM.at[jnp.arange(b)[:, None], slots_BxA1].set(emitted_BxA1, mode='drop')
    return (cache, next_B, next_drafts_BxA, position_B + n_B + 1, out_BxM,
            generated_B + n_B + 1, n_B)

  return prefill, one_round


def self_speculative_generate(model_config: ml_collections.ConfigDict, params, prompt_tokens_BxT,
                              max_new_tokens: int, *, prompt_lengths=None, pad_id: int = 0):
  """Greedy decoding drafted by the model's own multi-token heads -> (int32 [B, T + N],
  SpeculativeStats); the tokens equal `generate(..., temperature=0)`."""
  heads = model_config.get('mtp_heads', 0)
  if not heads:
    raise ValueError(f'model.mtp_heads={heads}: self-speculative decoding drafts with the '
                     'multi-token prediction heads; the model has none')
  if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens <= 0:
    raise ValueError(f'max_new_tokens={max_new_tokens!r} must be a positive integer')
  params = prepare_params(model_config, params)
  prompt, lengths = check_prompt(model_config, prompt_tokens_BxT, prompt_lengths)
  b, t = prompt.shape
  check_length(model_config, t + max_new_tokens)
  slots = min(round_up(t + max_new_tokens + heads + 1, CACHE_BUCKET), model_config.max_seq_len)
  padded_t = min(round_up(t, PROMPT_BUCKET), slots)
  cache_lib.check_rewind(model_config, heads, 'model.mtp_heads')
  cache_lib.check_rewind(model_config, padded_t - int(lengths.min()), 'prompt_lengths')
  padded = jnp.asarray(np.pad(prompt, ((0, 0), (0, padded_t - t)), constant_values=pad_id))
  prefill, one_round = _programs_for(model_config.to_json())
  cache = cache_lib.init_cache(model_config, b, slots)
  last_B, drafts_BxA, cache = prefill(params, cache, padded, jnp.asarray(lengths))
  out_BxM = jnp.full((b, max_new_tokens + heads + 1), pad_id, jnp.int32)
  out_BxM = out_BxM.at[:, 0].set(last_B)
  position_B, generated_B = jnp.asarray(lengths, jnp.int32), jnp.ones((b,), jnp.int32)
  stats = SpeculativeStats()
  while int(jnp.min(generated_B)) < max_new_tokens:
    active = int(jnp.sum(generated_B < max_new_tokens))
    cache, last_B, drafts_BxA, position_B, out_BxM, generated_B, n_B = one_round(
        params, cache, last_B, drafts_BxA, position_B, out_BxM, generated_B, slots)
    stats.rounds += 1
    stats.accepted += int(jnp.sum(jnp.where(generated_B - n_B - 1 < max_new_tokens, n_B, 0)))
    stats.proposed += heads * active
    stats.row_rounds += active
  return assemble(prompt, lengths, np.asarray(out_BxM[:, :max_new_tokens]), pad_id), stats
