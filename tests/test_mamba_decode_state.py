"""Mamba's decoding state is a fixed ring of recent positions: its size does not depend on the
cache length, decoding past the ring's wrap and rewinding by up to DECODE_REWIND positions equal
recomputation on fresh random inputs (pure and hybrid stacks); ragged prompts beyond the ring are
prefilled row by row; longer drafts are refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.inference import cache as cache_lib
from research.inference import generate, speculative_generate
from research.inference.decoder import decoder_for
from research.inference.recompute import greedy_without_cache
from research.model.mamba import DECODE_REWIND, ring_slots
from tests.test_inference_cache import (forward, incremental_logits, init_params,
                                        random_tokens, tiny_config)
from tests.test_mamba_inference import STACKS

LONG = dict(max_seq_len=96)  # room to decode well past the ring's W = DECODE_REWIND + Z - 1
# Over ~90 positions float32 scans grouped by different chunkings differ by ~3e-5 (logits ~5)
LONG_TOL = 1e-4


def _bytes(cache):
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(cache))


@pytest.mark.parametrize('name', ['pure', 'pure_scanned'])
def test_a_pure_mamba_cache_does_not_grow_with_its_length(name):
  c = tiny_config(**STACKS[name], **LONG)
  short, long = cache_lib.init_cache(c, 2, 8), cache_lib.init_cache(c, 2, 96)
  assert jax.tree.map(jnp.shape, short) == jax.tree.map(jnp.shape, long)
  assert _bytes(short) == _bytes(long)
  assert cache_lib.cache_length(long) is None  # no attention: no slot limit
  f, x = 2 * c.d_model, c.mamba_d_state
  layer = long['layers']['mamba'] if c.scan_layers else long['layers_0']['mamba']
  lead = (c.num_layers,) if c.scan_layers else ()
  assert layer['ssm_state'].shape == lead + (2, ring_slots(c.mamba_d_conv), f, x)


def test_cache_length_reads_the_attention_slots_and_scanned_rings_keep_batch_on_axis_1():
  hybrid = tiny_config(**STACKS['hybrid_rope'], **LONG)
  assert cache_lib.cache_length(cache_lib.init_cache(hybrid, 3, 64)) == 64
  scanned = tiny_config(**STACKS['pure_scanned'], **LONG)
  cache = cache_lib.init_cache(scanned, 3, 64)
  assert cache['layers']['mamba']['conv_input'].shape[:2] == (scanned.num_layers, 3)
  assert cache_lib.batch_axes(scanned)['layers']['mamba']['conv_input'] == 1


@pytest.mark.parametrize('name', ['pure', 'hybrid_rope'])
def test_decoding_past_the_ring_wrap_equals_recomputation(name):
  """A long prefill (more positions than the ring holds), single steps across the wrap and
  multi-token calls give the training model's logits."""
  c = tiny_config(**STACKS[name], **LONG)
  params = init_params(c, 11)
  tokens = random_tokens(c, 11, length=90)
  w = ring_slots(c.mamba_d_conv)
  chunks = [w + 6] + [1] * 15 + [5, 90 - w - 6 - 15 - 5]
  cached, _ = incremental_logits(c, params, tokens, chunks, slots=96)
  np.testing.assert_allclose(cached, forward(c, params, tokens), atol=LONG_TOL, rtol=LONG_TOL)


def test_a_rewind_of_decode_rewind_positions_after_the_wrap_recomputes_exactly():
  c = tiny_config(**STACKS['hybrid_rope'], **LONG)
  params = init_params(c, 12)
  tokens = random_tokens(c, 12, length=58)
  junk = random_tokens(c, 13, length=DECODE_REWIND)
  stale = np.concatenate([tokens[:, :50], junk], 1)
  _, cache = incremental_logits(c, params, stale, [40, 10] + [1] * DECODE_REWIND, slots=96)
  positions = jnp.broadcast_to(jnp.arange(50, 58), (2, 8))
  logits, _ = decoder_for(c).extend(params, cache, jnp.asarray(tokens[:, 50:]), positions)
  np.testing.assert_allclose(logits, forward(c, params, tokens)[:, 50:], atol=LONG_TOL,
                             rtol=LONG_TOL)


def test_ragged_prompts_beyond_the_ring_are_prefilled_row_by_row_and_equal_recomputation():
  c = tiny_config(**STACKS['pure'], **LONG)
  params = init_params(c, 14)
  prompt = random_tokens(c, 14, length=40)
  got = generate(c, params, prompt, 3, prompt_lengths=[40, 3])
  for row, n in enumerate((40, 3)):
    want = greedy_without_cache(c, params, prompt[row:row + 1, :n], 3)[0]
    np.testing.assert_array_equal(got[row, :n + 3], want)


def test_drafts_longer_than_the_ring_are_refused_by_name():
  c = tiny_config(**STACKS['pure'], **LONG)
  params = init_params(c, 15)
  prompt = random_tokens(c, 15, length=4)
  with pytest.raises(ValueError, match='num_draft'):
    speculative_generate(c, params, c, params, prompt, 2, num_draft=DECODE_REWIND + 1)
  assert cache_lib.can_rewind(tiny_config(**LONG), 10 * DECODE_REWIND)  # attention: any distance
