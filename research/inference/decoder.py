"""The compiled decoding programs of one model config: prefill, one-token step, k-token extend.

Each is jitted once per shape (batch, cache length, prompt bucket) and reused for every token, so
generating longer never recompiles. Params may be float or quantised: device memory keeps only the
int8/int4 copy; the model's matmuls read it through the CPU kernel where they can, and the other
quantised leaves are dequantised inside the program (research.inference.quantize.model_variables).
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
from research.inference import sampling
from research.inference.quantize import model_variables
from research.model import Transformer
from research.model import weights


class RowSampling(NamedTuple):
  """Per-row sampling settings, each [B]: temperature (0 greedy), top_k (0 off), top_p, seed."""
  temperature: jax.Array
  top_k: jax.Array
  top_p: jax.Array
  seed: jax.Array

  def sample(self, logits_BxV, counts_B):
    """Row b's token from its `counts_B[b]`-th key."""
    keys_B = sampling.row_keys(self.seed, counts_B)
    return sampling.sample(logits_BxV, keys_B, self.temperature, self.top_k, self.top_p)

  def probabilities(self, logits_BxV):
    return sampling.probabilities(logits_BxV, self.temperature, self.top_k, self.top_p)


def row_sampling(batch: int, temperature=0.0, top_k=0, top_p=1.0, seed=0) -> RowSampling:
  """Scalars or per-row sequences -> RowSampling; a scalar seed gives row b the seed `seed + b`."""
  sampling.check_sampling(temperature, top_k, top_p)
  seeds = sampling.per_row(seed, batch, 'int64', 'seed')
  if np.ndim(seed) == 0:
    seeds = seeds + np.arange(batch)
  return RowSampling(
      jnp.asarray(sampling.per_row(temperature, batch, 'float32', 'temperature')),
      jnp.asarray(sampling.per_row(top_k, batch, 'int32', 'top_k')),
      jnp.asarray(sampling.per_row(top_p, batch, 'float32', 'top_p')),
      jnp.asarray(seeds % 2**32, jnp.uint32))


class Decoder:
  """`prefill`, `step` and `extend` for `Transformer(config, decode=True)`; caches are donated.

  `ring=True` (sliding-window models) reads and writes a ring cache of S >= W slots, position p at
  slot p mod S (cache.ring_from_prefill makes one); `step` then runs past S, to model.max_seq_len.
  """

  def __init__(self, model_config: ml_collections.ConfigDict, ring: bool = False):
    self.config, self.ring = model_config, ring
    self.model = Transformer(model_config, decode=True, ring_cache=ring)
    self.prefill = jax.jit(self._prefill, donate_argnums=(1,))
    self.step = jax.jit(self._step, donate_argnums=(1,))
    self.extend = jax.jit(self._extend, donate_argnums=(1,))

  def apply(self, params, cache, tokens_BxT, positions_BxT):
    """Logits [B, T, V] of `tokens_BxT` placed at `positions_BxT`, and the updated cache."""
    logits_BxTxV, updated = self.model.apply(
        {**model_variables(params), 'cache': cache}, tokens_BxT, positions_BxT, mutable=['cache'])
    return logits_BxTxV, updated['cache']

  def last_logits(self, params, cache, prompt_BxT, lengths_B):
    """Caches a right-padded prompt -> (logits [B, V] at each row's last prompt token, cache).

    Only those B positions go through the output layer: the other T - 1 rows of logits would
    cost T x D x V multiply-adds and are never used.
    """
    b, t = prompt_BxT.shape
    positions_BxT = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    (hidden_BxTxD, unembed_DxV), updated = self.model.apply(
        {**model_variables(params), 'cache': cache}, prompt_BxT, positions_BxT,
        return_hidden=True, mutable=['cache'])
    last_BxD = jnp.take_along_axis(hidden_BxTxD, (lengths_B - 1)[:, None, None], axis=1)[:, 0]
    logits_BxV = weights.contract('bd,dv->bv', last_BxD, unembed_DxV, hidden_BxTxD.dtype,
                                  preferred_element_type=jnp.float32)
    return logits_BxV, updated['cache']

  def _prefill(self, params, cache, prompt_BxT, lengths_B, rows: RowSampling):
    """Caches a right-padded prompt, sets each row's index to its length, samples token 1."""
    last_BxV, cache = self.last_logits(params, cache, prompt_BxT, lengths_B)
    token_B = rows.sample(last_BxV, jnp.zeros_like(lengths_B))
    return token_B, cache_lib.set_index(cache, lengths_B)

  def _step(self, params, cache, tokens_B, counts_B, rows: RowSampling, done_B, stop_S, pad_id):
    """Feeds each row's last token; samples the next (`pad_id` once a row has hit a stop token).

    Returns (tokens [B], done [B], cache). A row's index past the cache is clamped to its last slot
    (idle rows in a batch).
    """
    slots = self.config.max_seq_len if self.ring else cache_lib.cache_length(cache)
    positions_Bx1 = cache['index'][:, None]
    if slots is not None:
      positions_Bx1 = jnp.minimum(positions_Bx1, slots - 1)
    logits_Bx1xV, cache = self.apply(params, cache, tokens_B[:, None], positions_Bx1)
    next_B = rows.sample(logits_Bx1xV[:, 0], counts_B)
    next_B = jnp.where(done_B, pad_id, next_B)
    done_B = done_B | jnp.isin(next_B, stop_S)
    return next_B, done_B, cache

  def _extend(self, params, cache, tokens_BxT, positions_BxT):
    """Logits of T tokens at explicit positions (speculative verification, drafting)."""
    return self.apply(params, cache, tokens_BxT, positions_BxT)


@functools.lru_cache(maxsize=16)
def _decoder_for(config_json: str, ring: bool) -> Decoder:
  return Decoder(ml_collections.ConfigDict(json.loads(config_json)), ring)


def decoder_for(model_config: ml_collections.ConfigDict, ring: bool = False) -> Decoder:
  """The Decoder of a config, built once per distinct config so its compilations are reused."""
  return _decoder_for(model_config.to_json(), ring)
