"""Mamba layers in the decoding cache: cached decoding equals recomputation for pure and hybrid
stacks; generate, ragged prompts, beam search and speculative decoding work unchanged."""

import jax.numpy as jnp
import numpy as np
import pytest

from research.inference import beam_search, generate, speculative_generate
from research.inference.decoder import decoder_for
from research.inference.recompute import greedy_without_cache
from tests.test_inference_cache import (TOL, assert_cached_decoding_matches_recomputation,
                                        forward, incremental_logits, init_params, random_tokens,
                                        tiny_config)

MAMBA = dict(position='none', norm='rmsnorm', use_bias=False, mamba_d_state=4, mamba_d_conv=3,
             block_pattern='M')
STACKS = {
    'pure': MAMBA,
    'pure_scanned': dict(MAMBA, scan_layers=True),
    'hybrid_rope': dict(MAMBA, block_pattern='MA', num_layers=3, position='rope'),
    'hybrid_postnorm_bias': dict(MAMBA, block_pattern='AM', norm_position='post', use_bias=True),
}


@pytest.mark.parametrize('name', sorted(STACKS))
def test_cached_decoding_matches_full_recomputation(name):
  assert_cached_decoding_matches_recomputation(tiny_config(**STACKS[name]))


def test_a_rewound_row_recomputes_from_its_stored_state():
  """Writing stale tokens past a row's position, then rewinding, leaves no trace (speculative
  rejection and right-padded prompts rely on it)."""
  c = tiny_config(**STACKS['hybrid_rope'])
  params = init_params(c, 2)
  tokens = random_tokens(c, 2, length=10)
  junk = random_tokens(c, 3, length=4)
  _, cache = incremental_logits(c, params, np.concatenate([tokens[:, :6], junk], 1), [10])
  positions = jnp.broadcast_to(jnp.arange(6, 10), (2, 4))
  logits, _ = decoder_for(c).extend(params, cache, jnp.asarray(tokens[:, 6:]), positions)
  np.testing.assert_allclose(logits, forward(c, params, tokens)[:, 6:], atol=TOL, rtol=TOL)


def test_generate_equals_greedy_recomputation_with_ragged_prompts():
  c = tiny_config(**STACKS['hybrid_rope'])
  params = init_params(c, 3)
  prompts = [random_tokens(c, s, batch=1, length=n)[0] for s, n in ((3, 5), (4, 9))]
  padded = np.zeros((2, 9), np.int32)
  for row, p in enumerate(prompts):
    padded[row, :len(p)] = p
  got = generate(c, params, padded, 7, prompt_lengths=[5, 9])
  for row, p in enumerate(prompts):
    np.testing.assert_array_equal(got[row, :len(p) + 7], greedy_without_cache(c, params, p[None],
                                                                              7)[0])


def test_beam_search_of_width_one_is_greedy_and_speculative_equals_greedy():
  c = tiny_config(**STACKS['pure'])
  params = init_params(c, 4)
  prompt = random_tokens(c, 4, batch=2, length=6)
  want = generate(c, params, prompt, 10)
  beams, _ = beam_search(c, params, prompt, 10, 1, 0.0)
  np.testing.assert_array_equal(beams[:, 0], want)
  draft = tiny_config(**dict(STACKS['hybrid_rope'], num_layers=1, block_pattern='M'))
  got, stats = speculative_generate(c, params, draft, init_params(draft, 5), prompt, 10,
                                    num_draft=3)
  np.testing.assert_array_equal(got, want)
  assert stats.accepted < stats.proposed  # rejected drafts: both caches were rewound
