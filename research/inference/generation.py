"""`generate`: batched prompts (equal or ragged lengths) -> sampled continuations, with a KV cache.

The prompt is prefilled in one pass; then one compiled step per token. Shapes are bucketed (cache
length to a multiple of CACHE_BUCKET, prompt to PROMPT_BUCKET), so other lengths in the same bucket
reuse the compiled programs. A sliding-window model whose window W is shorter than the cache
decodes into a ring of W attention slots (`ring_cache`), so its memory stops growing at W.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.inference import cache as cache_lib
from research.inference.decoder import decoder_for, row_sampling
from research.inference.params import prepare_params

CACHE_BUCKET = 64
PROMPT_BUCKET = 16
CHECK_DONE_EVERY = 16  # steps between host checks whether every row has stopped


def round_up(n: int, multiple: int) -> int:
  """The smallest multiple of `multiple` that is >= n."""
  return -(-n // multiple) * multiple


def check_prompt(model_config, prompt_tokens_BxT, prompt_lengths=None):
  """-> (int32 prompt [B, T], lengths [B]); ValueError naming the argument when malformed."""
  prompt = np.asarray(prompt_tokens_BxT)
  if prompt.ndim != 2 or prompt.shape[0] == 0 or prompt.shape[1] == 0:
    raise ValueError(f'prompt_tokens_BxT: expected a non-empty [batch, length] array, got shape '
                     f'{prompt.shape}')
  if not np.issubdtype(prompt.dtype, np.integer):
    raise ValueError(f'prompt_tokens_BxT: expected integer token ids, got {prompt.dtype}')
  if prompt.min() < 0 or prompt.max() >= model_config.vocab_size:
    raise ValueError(f'prompt_tokens_BxT: token ids must lie in [0, {model_config.vocab_size}), '
                     f'got [{prompt.min()}, {prompt.max()}]')
  b, t = prompt.shape
  if prompt_lengths is None:
    lengths = np.full((b,), t, np.int32)
  else:
    lengths = np.asarray(prompt_lengths, np.int32)
    if lengths.shape != (b,) or lengths.min() < 1 or lengths.max() > t:
      raise ValueError(f'prompt_lengths={prompt_lengths!r}: expected {b} lengths in [1, {t}]')
  return prompt.astype(np.int32), lengths


def check_length(model_config, total: int, what: str = 'max_new_tokens') -> None:
  if total > model_config.max_seq_len:
    raise ValueError(f'{what}: prompt plus new tokens is {total} tokens, more than the model '
                     f'context model.max_seq_len={model_config.max_seq_len}')


def assemble(prompt_BxT, lengths_B, generated_BxM, pad_id: int):
  """[B, T + N]: each row's prompt (its first `lengths[b]` tokens), its new tokens, then padding."""
  b, t = prompt_BxT.shape
  out = np.full((b, t + generated_BxM.shape[1]), pad_id, np.int32)
  for row in range(b):
    n = lengths_B[row]
    out[row, :n] = prompt_BxT[row, :n]
    out[row, n:n + generated_BxM.shape[1]] = generated_BxM[row]
  return out


def _prefill_rows(decoder, params, cache, slots: int, padded_BxT, lengths_B, rows):
  """Prefills each row alone, padded to its own bucket, into its rows of `cache`: for ragged
  prompts that a Mamba layer's ring could not rewind across (`cache.can_rewind`)."""
  axes = cache_lib.batch_axes(decoder.config)
  tokens = []
  for row, n in enumerate(lengths_B):
    row_t = min(round_up(int(n), PROMPT_BUCKET), padded_BxT.shape[1])
    token_1, row_cache = decoder.prefill(
        params, cache_lib.init_cache(decoder.config, 1, slots),
        jnp.asarray(padded_BxT[row:row + 1, :row_t]), jnp.asarray(lengths_B[row:row + 1]),
        jax.tree.map(lambda x: x[row:row + 1], rows))
    cache = cache_lib.put_rows(cache, row_cache, row, axes)
    tokens.append(token_1)
  return jnp.concatenate(tokens), cache


def generate(model_config: ml_collections.ConfigDict, params, prompt_tokens_BxT,
             max_new_tokens: int, temperature=0.0, top_k=0, top_p=1.0, seed=0, *,
             prompt_lengths=None, stop_tokens=(), pad_id: int = 0,
             ring_cache: bool = True) -> np.ndarray:
  """Samples `max_new_tokens` after each prompt -> int32 [B, T + max_new_tokens].

  temperature 0 is greedy; `top_k`/`top_p` filter as in Hugging Face. `temperature`, `top_k`,
  `top_p` and `seed` are scalars or one value per row (a scalar seed gives row b `seed + b`).
  Ragged prompts: right-pad them and pass `prompt_lengths`; row b's new tokens then start at
  `prompt_lengths[b]`. After a row emits one of `stop_tokens` it continues with `pad_id`. Params
  may be float or quantised (`research.inference.quantize`). With `model.sliding_window` W
  shorter than the cache, the prompt is prefilled into a cache of its own length and its last W
  positions move into a ring of W slots for the steps (`ring_cache=False`: a cache of every
  position, for comparison).
  """
  c = model_config
  params = prepare_params(c, params)
  prompt, lengths = check_prompt(c, prompt_tokens_BxT, prompt_lengths)
  if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
    raise ValueError(f'max_new_tokens={max_new_tokens!r} must be a non-negative integer')
  b, t = prompt.shape
  check_length(c, t + max_new_tokens)
  rows = row_sampling(b, temperature, top_k, top_p, seed)
  if max_new_tokens == 0:
    return prompt
  decoder = decoder_for(c)
  slots = min(round_up(t + max_new_tokens, CACHE_BUCKET), c.max_seq_len)
  padded_t = min(round_up(t, PROMPT_BUCKET), slots)
  ring = bool(ring_cache and c.sliding_window and c.sliding_window < slots)
  prefill_slots = padded_t if ring else slots
  padded = np.pad(prompt, ((0, 0), (0, padded_t - t)), constant_values=pad_id)
  cache = cache_lib.init_cache(c, b, prefill_slots)
  if cache_lib.can_rewind(c, padded_t - int(lengths.min())):
    token_B, cache = decoder.prefill(params, cache, jnp.asarray(padded), jnp.asarray(lengths),
                                     rows)
  else:
    token_B, cache = _prefill_rows(decoder, params, cache, prefill_slots, padded, lengths, rows)
  if ring:
    cache = cache_lib.ring_from_prefill(c, cache, c.sliding_window)
    decoder = decoder_for(c, ring=True)
  stop_Y = jnp.asarray(list(stop_tokens) or [-1], jnp.int32)
  done_B = jnp.isin(token_B, stop_Y)
  generated = [token_B]
  for i in range(1, max_new_tokens):
    counts_B = jnp.full((b,), i, jnp.int32)
    token_B, done_B, cache = decoder.step(params, cache, token_B, counts_B, rows, done_B, stop_Y,
                                          pad_id)
    generated.append(token_B)
    if i % CHECK_DONE_EVERY == 0 and bool(jnp.all(done_B)):
      break
  generated_BxM = np.asarray(jnp.stack(generated, axis=1))
  generated_BxM = np.pad(generated_BxM, ((0, 0), (0, max_new_tokens - generated_BxM.shape[1])),
                         constant_values=pad_id)
  return assemble(prompt, lengths, generated_BxM, pad_id)
