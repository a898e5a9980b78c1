"""Every attention path (XLA fused, blockwise, query blocks, splash in interpret mode) equals the
einsum reference in outputs and gradients; the blockwise path's memory grows linearly with length
and the query-block path skips the masked part of the score matrix."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.model.attention import dot_product_attention, reference_attention
from research.model.blockwise_attention import blockwise_attention
from research.model.query_block_attention import query_block_attention


def qkv(seed, t, n, k, h=16, b=2):
  rng = np.random.default_rng(seed)
  make = lambda heads: jnp.asarray(rng.normal(size=(b, t, heads, h)), jnp.float32)
  return make(n), make(k), make(k)


def outputs_and_grads(fn, q, k, v):
  """fn(q, k, v) and the gradients of sum(sin(fn)), each compiled (op by op is slower here)."""
  loss = lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v)))
  return jax.jit(fn)(q, k, v), jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)


def assert_matches_reference(attention, q, k, v, window):
  """attention(q, k, v) equals the einsum reference with the same window, outputs and gradients."""
  ref_out, ref_grads = outputs_and_grads(
      lambda q, k, v: reference_attention(q, k, v, window), q, k, v)
  out, grads = outputs_and_grads(attention, q, k, v)
  np.testing.assert_allclose(out, ref_out, atol=2e-6)
  for a, b in zip(grads, ref_grads):
    np.testing.assert_allclose(a, b, atol=2e-5)


CASES = [(200, 4, 2, 0), (256, 4, 1, 37), (130, 2, 2, 0), (64, 6, 3, 5)]


@pytest.mark.parametrize('t,n,k,window', CASES)
@pytest.mark.parametrize('blocks', [(64, 48), (32, 32), (256, 256)])
def test_blockwise_matches_reference(t, n, k, window, blocks):
  q, kk, v = qkv(t + n + window, t, n, k)
  assert_matches_reference(lambda q, k, v: blockwise_attention(q, k, v, window, *blocks),
                           q, kk, v, window)


# (t, n, k, window, num_blocks): 8 blocks of 25; a window within one block and across blocks;
# 4 blocks asked of t = 130, which has 2 as its largest divisor not above 4.
@pytest.mark.parametrize('t,n,k,window,num_blocks', [
    (200, 4, 2, 0, 8), (64, 6, 3, 5, 4), (256, 4, 1, 37, 4), (130, 2, 2, 0, 4)])
def test_query_blocks_match_reference(t, n, k, window, num_blocks):
  q, kk, v = qkv(t + n + window + num_blocks, t, n, k)
  assert_matches_reference(lambda q, k, v: query_block_attention(q, k, v, window, num_blocks),
                           q, kk, v, window)


def test_query_blocks_of_a_cache_longer_than_the_queries_match_reference():
  q, _, _ = qkv(1, 48, 4, 2)
  _, kk, v = qkv(2, 80, 4, 2)
  for window in (0, 20):
    np.testing.assert_allclose(query_block_attention(q, kk, v, window),
                               reference_attention(q, kk, v, window), atol=2e-6)


@pytest.mark.parametrize('impl', ['xla', 'blockwise', 'query_blocks', 'splash'])
@pytest.mark.parametrize('t,n,k,window', [(256, 4, 1, 37), (128, 2, 2, 0), (128, 4, 2, 0)])
def test_attention_impls_match_reference(impl, t, n, k, window):
  q, kk, v = qkv(t * n + k, t, n, k)
  assert_matches_reference(lambda q, k, v: dot_product_attention(q, k, v, impl, window),
                           q, kk, v, window)


def temp_bytes(fn, t):
  """XLA's compile-time temporary memory for the forward and backward pass at length t."""
  q, k, v = (jax.ShapeDtypeStruct((1, t, 4, 64), jnp.float32) for _ in range(3))
  grad = jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v)), argnums=(0, 1, 2))
  return jax.jit(grad).lower(q, k, v).compile().memory_analysis().temp_size_in_bytes


def test_blockwise_memory_grows_linearly_while_reference_grows_quadratically():
  blockwise = [temp_bytes(blockwise_attention, t) for t in (1024, 2048, 4096)]
  reference = [temp_bytes(reference_attention, t) for t in (1024, 2048, 4096)]
  for small, big in zip(blockwise, blockwise[1:]):
    assert big / small < 2.3  # doubling the length about doubles the memory
  for small, big in zip(reference, reference[1:]):
    assert big / small > 3.5  # the [T, T] scores quadruple
  assert blockwise[-1] < reference[-1] / 8


def test_query_blocks_compute_five_eighths_of_the_attention_flops():
  """Four query blocks cover 5/8 of the [T, T] square; XLA's fused path computes all of it."""
  q = jax.ShapeDtypeStruct((2, 256, 4, 64), jnp.float32)
  flops = lambda fn: jax.jit(fn).lower(q, q, q).compile().cost_analysis()['flops']
  full = flops(lambda q, k, v: dot_product_attention(q, k, v, 'xla'))
  blocks = flops(lambda q, k, v: query_block_attention(q, k, v, num_blocks=4))
  assert 0.55 < blocks / full < 0.7, (blocks, full)
