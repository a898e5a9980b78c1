"""The prefix-LM / bidirectional attention mask against a naive loop, through both paths."""

import jax.numpy as jnp
import numpy as np
import pytest

from research.model.attention import dot_product_attention, prefix_mask, reference_attention


def naive(q, k, v, prefix):
  """Softmax attention where query i of row b sees key j iff j <= i or j < prefix[b]."""
  b, t, n, h = q.shape
  kv_heads = k.shape[2]
  out = np.zeros((b, t, n, h))
  for bi in range(b):
    for i in range(t):
      for head in range(n):
        kv = head * kv_heads // n
        js = [j for j in range(t) if j <= i or j < prefix[bi]]
        s = np.array([q[bi, i, head] @ k[bi, j, kv] for j in js]) / np.sqrt(h)
        w = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
        out[bi, i, head] = sum(wj * v[bi, j, kv] for wj, j in zip(w, js))
  return out


@pytest.mark.parametrize('kv_heads', [4, 2])
def test_prefix_and_bidirectional_masks_match_a_naive_loop(kv_heads):
  rng = np.random.default_rng(kv_heads)
  b, t, n, h = 4, 9, 4, 8
  q, k, v = (rng.normal(size=(b, t, heads, h)) for heads in (n, kv_heads, kv_heads))
  prefix = np.array([0, 3, 9, 1])  # causal, a prefix LM, bidirectional (MLM), one token
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  expected = naive(q, k, v, prefix)
  got = reference_attention(f32(q), f32(k), f32(v), prefix_B=jnp.asarray(prefix))
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)
  fused = dot_product_attention(f32(q), f32(k), f32(v), 'xla', prefix_B=jnp.asarray(prefix))
  np.testing.assert_allclose(np.asarray(fused), expected, atol=1e-5)
  causal = reference_attention(f32(q), f32(k), f32(v))
  np.testing.assert_allclose(np.asarray(got[0]), np.asarray(causal[0]), atol=1e-6)


def test_mask_shape_and_unsupported_paths():
  mask = np.asarray(prefix_mask(4, jnp.asarray([2])))[0]
  np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
  q = jnp.zeros((1, 4, 2, 8))
  with pytest.raises(ValueError, match="model.attention_impl='blockwise'"):
    dot_product_attention(q, q, q, 'blockwise', prefix_B=jnp.asarray([2]))
  with pytest.raises(ValueError, match='sliding_window=2'):
    dot_product_attention(q, q, q, 'xla', 2, prefix_B=jnp.asarray([2]))
