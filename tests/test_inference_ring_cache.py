"""A sliding-window model decodes into a ring of W cache slots (position p at slot p mod W): over a
generation several windows long its logits and greedy tokens equal those of a cache of every
position, for prompts shorter and longer than W, while its arrays really hold W slots."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.inference import cache as cache_lib
from research.inference import generate
from research.inference.decoder import decoder_for, row_sampling
from research.model.attention import SLOT_AXIS, cache_slots
from tests.test_inference_cache import TOL, init_params, random_tokens, tiny_config

WINDOW = 8
NEW = 40
RING_VARIANTS = {  # rotary (absolute positions in the rotation) and learned positions, scanned
    'rope_gqa': dict(position='rope', num_kv_heads=2),
    'learned_scanned': dict(scan_layers=True),
}


def ring_config(**overrides):
  return tiny_config(sliding_window=WINDOW, max_seq_len=64, **overrides)


def attention_slots(cache):
  """Slots S of every attention key/value array of a cache."""
  return {cache_slots(path[-1].key, x) for path, x in jax.tree_util.tree_flatten_with_path(cache)[0]
          if getattr(path[-1], 'key', None) in SLOT_AXIS}


def step_logits(c, params, prompt_1xT, fed_N, ring: bool):
  """Logits [N, V] of feeding tokens `fed_N` one at a time after the prompt (prefilled into a
  cache of the prompt's length), in a ring of W slots or in a cache of every position."""
  t = prompt_1xT.shape[1]
  full = decoder_for(c)
  slots = t if ring else t + len(fed_N)
  _, cache = full.prefill(params, cache_lib.init_cache(c, 1, slots), jnp.asarray(prompt_1xT),
                          jnp.asarray([t], jnp.int32), row_sampling(1))
  decoder = full
  if ring:
    cache = cache_lib.ring_from_prefill(c, cache, WINDOW)
    decoder = decoder_for(c, ring=True)
  logits = []
  for i, token in enumerate(fed_N):
    logits_1x1xV, cache = decoder.extend(params, cache, jnp.asarray([[token]]),
                                         jnp.asarray([[t + i]]))
    logits.append(np.asarray(logits_1x1xV[0, 0]))
  return np.stack(logits), cache


@pytest.mark.parametrize('name', sorted(RING_VARIANTS))
@pytest.mark.parametrize('length', [5, 13])  # shorter and longer than the window
def test_ring_cache_gives_the_logits_of_a_full_cache(name, length):
  """Random tokens fed for 40 steps (5 windows), so every key differs; then greedy decoding."""
  c = ring_config(**RING_VARIANTS[name])
  params = init_params(c, 70)
  prompt_1xT = random_tokens(c, length, batch=1, length=length)
  fed_N = random_tokens(c, 99, batch=1, length=NEW)[0]
  ring_logits, ring_cache = step_logits(c, params, prompt_1xT, fed_N, ring=True)
  full_logits, full_cache = step_logits(c, params, prompt_1xT, fed_N, ring=False)
  np.testing.assert_allclose(ring_logits, full_logits, atol=TOL, rtol=TOL)
  assert np.abs(np.diff(full_logits, axis=0)).max() > 0.1  # the steps really differ
  assert attention_slots(ring_cache) == {WINDOW}
  assert attention_slots(full_cache) == {length + NEW}
  assert cache_lib.cache_nbytes(ring_cache) < cache_lib.cache_nbytes(full_cache)
  ring = generate(c, params, prompt_1xT, NEW)
  np.testing.assert_array_equal(ring, generate(c, params, prompt_1xT, NEW, ring_cache=False))


@pytest.mark.parametrize('name', sorted(RING_VARIANTS))
def test_generate_in_a_ring_equals_a_full_cache_for_ragged_rows(name):
  """Rows of lengths 5 and 13 in one batch: each row's ring holds its own last W positions."""
  c = ring_config(**RING_VARIANTS[name])
  params = init_params(c, 71)
  prompt_2xT = random_tokens(c, 3, batch=2, length=13)
  lengths = [5, 13]
  ring = generate(c, params, prompt_2xT, NEW, prompt_lengths=lengths)
  full = generate(c, params, prompt_2xT, NEW, prompt_lengths=lengths, ring_cache=False)
  np.testing.assert_array_equal(ring, full)
  for row, n in enumerate(lengths):
    alone = generate(c, params, prompt_2xT[row:row + 1, :n], NEW, ring_cache=False)
    np.testing.assert_array_equal(ring[row, :n + NEW], alone[0])


def test_a_ring_refuses_chunks_it_cannot_hold_and_models_without_a_window():
  c = ring_config(**RING_VARIANTS['rope_gqa'])
  params = init_params(c, 72)
  ring = cache_lib.ring_from_prefill(c, cache_lib.init_cache(c, 1, 16), WINDOW)
  with pytest.raises(ValueError, match='at most 1 tokens per call'):
    decoder_for(c, ring=True).extend(params, ring, jnp.zeros((1, 2), jnp.int32),
                                     jnp.asarray([[0, 1]]))
  with pytest.raises(ValueError, match='slots=4'):
    cache_lib.ring_from_prefill(c, cache_lib.init_cache(c, 1, 16), 4)
  no_window = tiny_config(position='rope')
  with pytest.raises(ValueError, match='sliding_window'):
    cache_lib.ring_from_prefill(no_window, cache_lib.init_cache(no_window, 1, 16), WINDOW)
