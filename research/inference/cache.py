"""The decoding cache: shapes and logical axes from the model itself, and per-row edits.

The tree is the 'cache' collection of `Transformer(config, decode=True)`: `index` [B] (each row's
next free slot), every attention layer's `key` [B, K, H, S] and `value` [B, K, S, H] (the layouts
the score and mixing products read without copies; research/model/attention.py), and every Mamba
layer's ring `conv_input` [B, W, F] / `ssm_state` [B, W, F, X] of fixed size W (a leading layer
axis when scanned; research/model/mamba.py).
Each leaf's 'batch' axis is read from its logical names, so row edits work scanned or not.
A sliding-window model decodes into a ring of W attention slots (`ring_from_prefill`; position p at
slot p mod W, research/model/attention.py), so its memory does not grow with the length.
"""

from __future__ import annotations

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from research.model import Transformer
from research.model.attention import SLOT_AXIS, cache_slots
from research.model.config import num_attention_layers
from research.model.mamba import DECODE_REWIND


@functools.lru_cache(maxsize=64)
def _spec_for(config_json: str, batch: int, length: int):
  model = Transformer(ml_collections.ConfigDict(json.loads(config_json)), decode=True)
  tokens = jnp.zeros((batch, length), jnp.int32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), tokens))['cache']


def _boxed_spec(model_config: ml_collections.ConfigDict, batch: int, length: int):
  """The cache as boxed ShapeDtypeStructs: shapes plus logical axis names, nothing allocated."""
  return _spec_for(model_config.to_json(), batch, length)


def _is_box(x) -> bool:
  return isinstance(x, nn.LogicallyPartitioned)


def batch_axes(model_config: ml_collections.ConfigDict):
  """A tree like the cache holding each leaf's batch axis (0, or 1 under scanned layers)."""
  return jax.tree.map(lambda box: box.names.index('batch'), _boxed_spec(model_config, 1, 1),
                      is_leaf=_is_box)


def logical_axes(model_config: ml_collections.ConfigDict):
  """A tree like the cache of logical PartitionSpecs, e.g. ('batch', 'length', 'kv_heads', ...)."""
  spec = _boxed_spec(model_config, 1, 1)
  return jax.tree.map(lambda box: jax.sharding.PartitionSpec(*box.names), spec,
                      is_leaf=_is_box)


def cache_shardings(model_config: ml_collections.ConfigDict, mesh, rules):
  """NamedShardings of the cache under the same logical-axis rules as training."""
  return nn.logical_to_mesh_sharding(logical_axes(model_config), mesh, rules)


@functools.lru_cache(maxsize=64)
def _zeros_for(config_json: str, batch: int, length: int):
  spec = _spec_for(config_json, batch, length)

  def zeros():
    # Under a mesh and logical-axis rules the constraint shards each leaf; elsewhere a no-op.
    return jax.tree.map(
        lambda box: nn.with_logical_constraint(jnp.zeros(box.value.shape, box.value.dtype),
                                               box.names), spec, is_leaf=_is_box)

  return jax.jit(zeros)


def init_cache(model_config: ml_collections.ConfigDict, batch: int, length: int):
  """An empty cache of `batch` rows and `length` slots in the compute dtype, sharded by the
  logical-axis rules when called inside a mesh."""
  if batch <= 0:
    raise ValueError(f'batch={batch} must be positive')
  if length <= 0:
    raise ValueError(f'length={length} must be positive')
  return _zeros_for(model_config.to_json(), batch, length)()


def cache_length(cache) -> int | None:
  """Number of slots S of a cache's attention layers; None for a stack without attention, whose
  Mamba rings take any position."""
  lengths = [cache_slots('value', x) for path, x in jax.tree_util.tree_flatten_with_path(cache)[0]
             if getattr(path[-1], 'key', None) == 'value']
  return max(lengths) if lengths else None


def can_rewind(model_config: ml_collections.ConfigDict, steps: int) -> bool:
  """Whether a row may step back `steps` positions: at most mamba.DECODE_REWIND when the stack
  has Mamba layers (their rings keep no more); attention caches rewind any distance."""
  return steps <= DECODE_REWIND or num_attention_layers(model_config) == model_config.num_layers


def check_rewind(model_config: ml_collections.ConfigDict, steps: int, what: str) -> None:
  """ValueError naming `what` unless `can_rewind`."""
  if not can_rewind(model_config, steps):
    raise ValueError(f'{what}: a row steps back {steps} positions, more than the '
                     f'{DECODE_REWIND} a Mamba layer\'s decoding cache keeps')


def set_index(cache, index_B):
  """The cache with each row's next free slot set to `index_B`."""
  return dict(cache, index=jnp.asarray(index_B, jnp.int32))


def take_rows(cache, rows_B, axes):
  """Rows `rows_B` of every leaf (beam reordering, tiling): a cache of len(rows_B) rows."""
  return jax.tree.map(lambda x, a: jnp.take(x, rows_B, axis=a), cache, axes)


def put_rows(cache, rows_cache, start, axes):
  """`cache` with the rows from `start` on replaced by the rows of `rows_cache`."""
  return jax.tree.map(
      lambda x, r, a: jax.lax.dynamic_update_slice_in_dim(x, r.astype(x.dtype), start, axis=a),
      cache, rows_cache, axes)


def _is_attention_leaf(path) -> bool:
  return getattr(path[-1], 'key', None) in ('key', 'value')


@functools.lru_cache(maxsize=16)
def _ring_for(config_json: str, slots: int):
  axes = batch_axes(ml_collections.ConfigDict(json.loads(config_json)))

  @jax.jit
  def ring(cache):
    last_Bx1 = cache['index'][:, None] - 1
    held_BxS = last_Bx1 - (last_Bx1 - jnp.arange(slots)[None, :]) % slots  # as ring_positions
    source_BxS = jnp.maximum(held_BxS, 0)

    def gather(path, x, a):
      if not _is_attention_leaf(path):
        return x  # Mamba rings and the index are kept as they are
      # The slot axis of the leaf's layout (research/model/attention.py), after the batch's.
      slot = a + SLOT_AXIS[path[-1].key]
      shape = [1] * x.ndim
      shape[a], shape[slot] = held_BxS.shape
      taken = jnp.take_along_axis(x, source_BxS.reshape(shape), axis=slot)
      return jnp.where((held_BxS >= 0).reshape(shape), taken, 0)

    return jax.tree_util.tree_map_with_path(gather, cache, axes)

  return ring


def ring_from_prefill(model_config: ml_collections.ConfigDict, cache, slots: int):
  """A prefilled cache (slot p holds position p, each row's `index` its length) -> a ring of
  `slots` attention slots holding each row's last `slots` positions at slot p mod `slots`, for
  `Decoder(config, ring=True)`. `slots` must cover the window: the mask needs the last W keys."""
  window = model_config.sliding_window
  if not window or slots < window:
    raise ValueError(f'slots={slots}: a ring needs model.sliding_window > 0 and at least that many '
                     f'slots (model.sliding_window={window})')
  return _ring_for(model_config.to_json(), slots)(cache)


def cache_nbytes(cache) -> int:
  """Bytes of every array of a cache."""
  return sum(x.nbytes for x in jax.tree.leaves(cache))
