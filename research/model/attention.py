"""Causal self-attention: multi-head, grouped-query and multi-query, with optional sliding window,
or (training a prefix LM or MLM) bidirectional over a prefix: `prefix_mask`.

`num_kv_heads` < `num_heads` shares each key/value head among `num_heads // num_kv_heads` query
heads (GQA; 1 is MQA). Scores are scaled by 1/sqrt(head_dim) and normalised in float32.

With `decode=True` the layer keeps a key/value cache in the 'cache' collection, keys [B, K, H, S]
and values [B, K, S, H] (K = num_kv_heads, so GQA shrinks it). Those are the layouts XLA:CPU's
dots take for q.k and p.v, so no step copies the cache into them (a [B, S, K, H] cache was copied
twice per layer per step). Token t of row b is written at slot `positions[b, t]`, and queries
attend over every cached slot at or before their own position (a masked einsum, whatever `impl`
says: one query against the cache is a matrix-vector product, not a flash-attention job).
With a sliding window W and `ring_cache=True` the cache is a ring of S >= W slots: position p is
written at slot p mod S, so decoding memory is bounded by S whatever the length; rotary and the
mask still use the absolute positions (`ring_positions`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.model import positions as positions_lib
from research.model import weights
from research.model.blockwise_attention import blockwise_attention
from research.model.query_block_attention import query_block_attention
from research.model.splash_attention import splash_attention

# On CPU, 'auto' takes the query-block path (exact softmax over the keys each block of queries
# can see) for short sequences, and from this length on the blockwise path, whose memory grows
# linearly.
BLOCKWISE_FROM_LENGTH = 2048


def causal_mask(t: int, s: int, sliding_window: int = 0):
  """[T, S] boolean mask: query i sees key j iff j <= i (and i - j < sliding_window if set)."""
  q_T1 = jnp.arange(t)[:, None] + (s - t)
  k_1S = jnp.arange(s)[None, :]
  mask_TxS = k_1S <= q_T1
  if sliding_window:
    mask_TxS &= q_T1 - k_1S < sliding_window
  return mask_TxS


def prefix_mask(in_prefix_BxT):
  """[B, T, T] boolean mask of a prefix LM: query i sees key j iff j <= i or key j is in the
  row's prefix (`in_prefix_BxT`; all True: bidirectional, as for MLM; all False: causal)."""
  t = in_prefix_BxT.shape[1]
  causal_TxT = jnp.arange(t)[None, :] <= jnp.arange(t)[:, None]
  return causal_TxT[None] | jnp.asarray(in_prefix_BxT, bool)[:, None, :]


def attention_probabilities(q_BxTxNxH, k_BxSxKxH, sliding_window: int = 0,
                            in_prefix_BxT=None):
  """float32 [B, K, G, T, S] post-softmax causal attention weights; query head n is (k, g) with
  n = k * G + g. What `reference_attention` mixes the values with (and research.interp shows).
  With `in_prefix_BxT` the mask is `prefix_mask` instead (no sliding window)."""
  n, k = q_BxTxNxH.shape[2], k_BxSxKxH.shape[2]
  b, t, _, h = q_BxTxNxH.shape
  q_BxTxKxGxH = q_BxTxNxH.reshape(b, t, k, n // k, h).astype(jnp.float32)
  scores_BxKxGxTxS = jnp.einsum('btkgh,bskh->bkgts', q_BxTxKxGxH,
                                k_BxSxKxH.astype(jnp.float32)) / jnp.sqrt(jnp.float32(h))
  if in_prefix_BxT is None:
    mask = causal_mask(t, k_BxSxKxH.shape[1], sliding_window)  # [T, S]
  else:
    mask = prefix_mask(in_prefix_BxT)[:, None, None]  # [B, 1, 1, T, T]
  scores_BxKxGxTxS = jnp.where(mask, scores_BxKxGxTxS, jnp.finfo(jnp.float32).min)
  return jax.nn.softmax(scores_BxKxGxTxS, axis=-1)


def reference_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, sliding_window: int = 0,
                        in_prefix_BxT=None):
  """Plain einsum attention that materialises the [T, S] scores: the reference the tests trust."""
  b, t, n, h = q_BxTxNxH.shape
  probs_BxKxGxTxS = attention_probabilities(q_BxTxNxH, k_BxSxKxH, sliding_window, in_prefix_BxT)
  out_BxTxKxGxH = jnp.einsum('bkgts,bskh->btkgh', probs_BxKxGxTxS, v_BxSxKxH.astype(jnp.float32))
  return out_BxTxKxGxH.reshape(b, t, n, h).astype(q_BxTxNxH.dtype)


def resolve_attention_impl(impl: str, dtype, length: int) -> str:
  """'auto': cuDNN flash attention on GPU (16-bit compute), splash on TPU (length a multiple of
  128), on CPU the query-block path for short sequences and the blockwise path for long ones."""
  if impl != 'auto':
    return impl
  backend = jax.default_backend()
  if backend == 'gpu' and jnp.dtype(dtype).itemsize == 2:
    return 'cudnn'
  if backend == 'tpu' and length % 128 == 0:
    return 'splash'
  if backend == 'cpu':
    return 'blockwise' if length >= BLOCKWISE_FROM_LENGTH else 'query_blocks'
  return 'xla'


def dot_product_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, impl: str, sliding_window: int = 0,
                          in_prefix_BxT=None):
  """Causal attention through the chosen implementation; all agree with `reference_attention`.

  With `in_prefix_BxT` (a prefix LM; all True: bidirectional) the mask is `prefix_mask`, which
  the reference and XLA paths take (the XLA one as an explicit mask); the others raise ValueError.
  """
  if in_prefix_BxT is not None and impl == 'auto':
    impl = 'xla'  # the kernels 'auto' may choose (cudnn, splash, blockwise) take no prefix mask
  impl = resolve_attention_impl(impl, q_BxTxNxH.dtype, q_BxTxNxH.shape[1])
  if in_prefix_BxT is not None:
    if sliding_window or impl not in ('reference', 'xla'):
      raise ValueError(f'model.attention_impl={impl!r} (sliding_window={sliding_window}): a '
                       "prefix or bidirectional mask needs 'reference' or 'xla' and no window.")
    if impl == 'reference':
      return reference_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, in_prefix_BxT=in_prefix_BxT)
    mask_Bx1xTxT = prefix_mask(in_prefix_BxT)[:, None]
    return jax.nn.dot_product_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, mask=mask_Bx1xTxT,
                                        implementation='xla')
  if impl == 'reference':
    return reference_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, sliding_window)
  if impl == 'blockwise':
    return blockwise_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, sliding_window)
  if impl == 'query_blocks':
    return query_block_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, sliding_window)
  if impl == 'splash':
    return splash_attention(q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, sliding_window,
                            interpret=jax.default_backend() != 'tpu')
  window = (sliding_window - 1, 0) if sliding_window else None
  return jax.nn.dot_product_attention(
      q_BxTxNxH, k_BxSxKxH, v_BxSxKxH, is_causal=True, local_window_size=window,
      implementation=None if impl == 'xla' else impl)


def cached_attention(q_BxTxNxH, key_cache, value_cache, positions_BxT, sliding_window: int = 0,
                     slot_positions_BxS=None):
  """Attention of T new queries over a cache of S slots; slot j holds position j of each row, or
  `slot_positions_BxS[b, j]` when given (a ring; negative: empty).

  Query (b, t) sees slot j iff its position is in [0, positions[b, t]] (and within the window), so
  slots not yet written, or left over from a longer earlier sequence, are masked per row. The
  caches are in CACHE_LAYOUT.
  """
  b, t, n, h = q_BxTxNxH.shape
  k = key_cache.shape[CACHE_LAYOUT['key'].index('k')]
  s = cache_slots('value', value_cache)
  q_BxTxKxGxH = q_BxTxNxH.reshape(b, t, k, n // k, h)
  scores_BxKxGxTxS = jnp.einsum(f"btkgh,{CACHE_LAYOUT['key']}->bkgts", q_BxTxKxGxH, key_cache,
                                preferred_element_type=jnp.float32) / jnp.sqrt(jnp.float32(h))
  q_BxTx1 = positions_BxT[:, :, None]
  if slot_positions_BxS is None:
    k_Bx1xS = jnp.arange(s)[None, None, :]
    mask_BxTxS = k_Bx1xS <= q_BxTx1
  else:
    k_Bx1xS = slot_positions_BxS[:, None, :]
    mask_BxTxS = (k_Bx1xS >= 0) & (k_Bx1xS <= q_BxTx1)
  if sliding_window:
    mask_BxTxS &= q_BxTx1 - k_Bx1xS < sliding_window
  scores_BxKxGxTxS = jnp.where(mask_BxTxS[:, None, None], scores_BxKxGxTxS,
                               jnp.finfo(jnp.float32).min)
  probs_BxKxGxTxS = jax.nn.softmax(scores_BxKxGxTxS, axis=-1).astype(value_cache.dtype)
  out_BxTxKxGxH = jnp.einsum(f"bkgts,{CACHE_LAYOUT['value']}->btkgh", probs_BxKxGxTxS, value_cache,
                             preferred_element_type=jnp.float32)
  return out_BxTxKxGxH.reshape(b, t, n, h).astype(q_BxTxNxH.dtype)


# Each cache's layout, one letter an axis: b batch, k key/value heads, h head size, s slots.
CACHE_LAYOUT = {'key': 'bkhs', 'value': 'bksh'}
_LOGICAL = {'b': 'batch', 'k': 'kv_heads', 'h': 'head_dim', 's': 'length'}
CACHE_AXES = {name: tuple(_LOGICAL[a] for a in layout) for name, layout in CACHE_LAYOUT.items()}
SLOT_AXIS = {name: layout.index('s') for name, layout in CACHE_LAYOUT.items()}
# Where each axis of a cache comes from in a [B, T, K, H] input (T goes to the slot axis).
_FROM_BTKH = {name: ['bskh'.index(a) for a in layout] for name, layout in CACHE_LAYOUT.items()}


def cache_slots(name: str, cache_x) -> int:
  """Slots S of a cache leaf `name` ('key' or 'value'), with or without a leading layer axis."""
  return cache_x.shape[SLOT_AXIS[name] - len(CACHE_LAYOUT[name])]


def _to_layout(name, x_BxTxKxH):
  """[B, T, K, H] -> the axes of cache `name` (T in the slot axis)."""
  return jnp.transpose(x_BxTxKxH, _FROM_BTKH[name])


def _cache_variable(module, name, like_BxTxKxH):
  """The cache `name` in its layout; S is the length of the input at initialisation."""
  shape = tuple(like_BxTxKxH.shape[a] for a in _FROM_BTKH[name])
  return module.variable('cache', name, nn.with_logical_partitioning(jnp.zeros, CACHE_AXES[name]),
                         shape, like_BxTxKxH.dtype)


def ring_positions(positions_BxT, slots: int):
  """[B, S]: the position each slot of a ring holds once a call's positions are written, for
  consecutive positions written in order: slot j holds the latest p <= max(positions) with
  p = j (mod S); negative for a slot never written."""
  last_Bx1 = jnp.max(positions_BxT, axis=1, keepdims=True)
  return last_Bx1 - (last_Bx1 - jnp.arange(slots)[None, :]) % slots


def check_ring(slots: int, tokens: int, sliding_window: int) -> None:
  """ValueError unless a ring of `slots` slots can take `tokens` new ones per call: each query
  must still find its last W positions after the call's writes, so T <= S - W + 1."""
  if not sliding_window:
    raise ValueError('ring_cache: the model has no sliding window (model.sliding_window=0)')
  if tokens > slots - sliding_window + 1:
    raise ValueError(f'ring_cache: a ring of {slots} slots under model.sliding_window='
                     f'{sliding_window} takes at most {slots - sliding_window + 1} tokens per '
                     f'call, got {tokens} (prefill into a full cache, then '
                     'cache.ring_from_prefill)')


def update_cache(module, k_BxTxKxH, v_BxTxKxH, positions_BxT, ring: bool = False):
  """Writes the new keys/values at their positions' slots (mod S for a ring); returns the whole
  caches, in CACHE_LAYOUT."""
  initialised = module.has_variable('cache', 'key')
  key = _cache_variable(module, 'key', k_BxTxKxH)
  value = _cache_variable(module, 'value', v_BxTxKxH)
  if not initialised:  # `init` only shapes the cache: nothing is written
    return _to_layout('key', k_BxTxKxH), _to_layout('value', v_BxTxKxH)
  rows_Bx1 = jnp.arange(k_BxTxKxH.shape[0])[:, None]
  slots_BxT = positions_BxT % cache_slots('value', value.value) if ring else positions_BxT
  for name, var, new_BxTxKxH in (('key', key, k_BxTxKxH), ('value', value, v_BxTxKxH)):
    # NumPy indexing puts the [B, T] of the row and slot indices first and keeps the sliced k, h
    # in order, so the update is [B, T, K, H] whatever the layout.
    at = tuple({'b': rows_Bx1, 's': slots_BxT}.get(a, slice(None)) for a in CACHE_LAYOUT[name])
    updated = var.value.at[at].set(new_BxTxKxH.astype(var.value.dtype), mode='drop')
    var.value = nn.with_logical_constraint(updated, CACHE_AXES[name])
  return key.value, value.value


def _projection(module, name, shape, axes, std, param_dtype):
  """A float projection, or in decoding maybe a quantised one (research/model/weights.py)."""
  return weights.matrix(module, name, nn.initializers.normal(std), shape, axes, param_dtype)


def _bias(module, name, shape, axes, param_dtype):
  return module.param(name, nn.with_logical_partitioning(nn.initializers.zeros, axes), shape,
                      param_dtype)


class Attention(nn.Module):
  """Projects to queries/keys/values, rotates them by position (RoPE), attends, projects back."""
  num_heads: int
  num_kv_heads: int
  head_dim: int
  use_bias: bool
  position: str  # model.position: 'rope' rotates queries and keys, the others leave them
  rope_base: float
  sliding_window: int
  impl: str
  init_std: float
  out_init_std: float
  dtype: jnp.dtype
  param_dtype: jnp.dtype
  decode: bool = False  # read and extend the key/value cache (see the module docstring)
  ring_cache: bool = False  # decode: the cache is a ring of S >= sliding_window slots
  query_multiplier: float = 1.0  # muP: 1/sqrt(head_dim), so the scores are q.k / head_dim

  @nn.compact
  def __call__(self, x_BxTxD, positions_BxT, in_prefix_BxT=None):
    """`in_prefix_BxT` (bool, training only): keys every query of the row sees (prefix LM)."""
    d, n, k, h = x_BxTxD.shape[-1], self.num_heads, self.num_kv_heads, self.head_dim
    pd, std = self.param_dtype, self.init_std
    wq_DxNxH = _projection(self, 'query', (d, n, h), ('embed', 'heads', 'head_dim'), std, pd)
    wk_DxKxH = _projection(self, 'key', (d, k, h), ('embed', 'kv_heads', 'head_dim'), std, pd)
    wv_DxKxH = _projection(self, 'value', (d, k, h), ('embed', 'kv_heads', 'head_dim'), std, pd)
    wo_NxHxD = _projection(self, 'out', (n, h, d), ('heads', 'head_dim', 'embed'),
                           self.out_init_std, pd)
    x = x_BxTxD.astype(self.dtype)
    q_BxTxNxH = weights.contract('btd,dnh->btnh', x, wq_DxNxH, self.dtype)
    k_BxTxKxH = weights.contract('btd,dkh->btkh', x, wk_DxKxH, self.dtype)
    v_BxTxKxH = weights.contract('btd,dkh->btkh', x, wv_DxKxH, self.dtype)
    if self.use_bias:
      q_BxTxNxH += _bias(self, 'query_bias', (n, h), ('heads', 'head_dim'), pd).astype(self.dtype)
      k_BxTxKxH += _bias(self, 'key_bias', (k, h), ('kv_heads', 'head_dim'), pd).astype(self.dtype)
      v_BxTxKxH += _bias(self, 'value_bias', (k, h), ('kv_heads', 'head_dim'),
                         pd).astype(self.dtype)
    q_BxTxNxH, k_BxTxKxH = positions_lib.rotate_queries_and_keys(
        q_BxTxNxH, k_BxTxKxH, positions_BxT, self.position, self.rope_base)
    if self.query_multiplier != 1.0:
      q_BxTxNxH = q_BxTxNxH * jnp.asarray(self.query_multiplier, q_BxTxNxH.dtype)
    q_BxTxNxH = nn.with_logical_constraint(q_BxTxNxH, ('batch', 'length', 'heads', 'head_dim'))
    # For research.interp: recorded only when 'intermediates' is mutable, else sow does nothing
    # and the compiled program is unchanged.
    self.sow('intermediates', 'queries', q_BxTxNxH)
    self.sow('intermediates', 'keys', k_BxTxKxH)
    if self.decode:
      if in_prefix_BxT is not None:
        raise ValueError('a prefix mask is for training; decoding attends causally')
      key_cache, value_cache = update_cache(self, k_BxTxKxH, v_BxTxKxH, positions_BxT,
                                            self.ring_cache)
      slots = cache_slots('value', value_cache)
      slot_positions_BxS = None
      if self.ring_cache and not self.is_initializing():
        check_ring(slots, k_BxTxKxH.shape[1], self.sliding_window)
        slot_positions_BxS = ring_positions(positions_BxT, slots)
      out_BxTxNxH = cached_attention(q_BxTxNxH, key_cache, value_cache, positions_BxT,
                                     self.sliding_window, slot_positions_BxS)
    else:
      out_BxTxNxH = dot_product_attention(q_BxTxNxH, k_BxTxKxH, v_BxTxKxH, self.impl,
                                          self.sliding_window, in_prefix_BxT)
    self.sow('intermediates', 'heads', out_BxTxNxH)  # each head's output, before projecting back
    if weights.is_quantized(wo_NxHxD):
      y_BxTxD = weights.contract('btnh,nhd->btd', out_BxTxNxH, wo_NxHxD, self.dtype)
    else:  # one [N*H, D] matrix: for two contracted axes XLA:CPU copies the weight every call
      b, t = out_BxTxNxH.shape[:2]
      y_BxTxD = jnp.einsum('btf,fd->btd', out_BxTxNxH.reshape(b, t, n * h),
                           wo_NxHxD.reshape(n * h, d).astype(self.dtype))
    if self.use_bias:
      y_BxTxD += _bias(self, 'out_bias', (d,), ('embed',), pd).astype(self.dtype)
    return y_BxTxD
