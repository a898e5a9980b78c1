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
  in_prefix = jnp.arange(t)[None, :] < jnp.asarray(prefix)[:, None]
  got = reference_attention(f32(q), f32(k), f32(v), in_prefix_BxT=in_prefix)
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)
  fused = dot_product_attention(f32(q), f32(k), f32(v), 'xla', in_prefix_BxT=in_prefix)
  np.testing.assert_allclose(np.asarray(fused), expected, atol=1e-5)
  causal = reference_attention(f32(q), f32(k), f32(v))
  np.testing.assert_allclose(np.asarray(got[0]), np.asarray(causal[0]), atol=1e-6)


def test_mask_shape_and_unsupported_paths():
  mask = np.asarray(prefix_mask(jnp.asarray([[True, True, False, False]])))[0]
  np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
  q = jnp.zeros((1, 4, 2, 8))
  with pytest.raises(ValueError, match="model.attention_impl='blockwise'"):
    dot_product_attention(q, q, q, 'blockwise', in_prefix_BxT=jnp.ones((1, 4), bool))
  with pytest.raises(ValueError, match='sliding_window=2'):
    dot_product_attention(q, q, q, 'xla', 2, in_prefix_BxT=jnp.ones((1, 4), bool))


def test_auto_takes_the_masked_xla_path_where_it_would_choose_a_kernel():
  """At 2048 positions 'auto' picks the blockwise kernel on CPU; with a prefix mask it falls back
  to XLA, so a non-causal objective trains with the default attention_impl."""
  rng = np.random.default_rng(3)
  t = 2048
  q, k, v = (jnp.asarray(rng.normal(size=(1, t, 1, 8)), jnp.float32) for _ in range(3))
  in_prefix = jnp.arange(t)[None] < 700
  out = dot_product_attention(q, k, v, 'auto', in_prefix_BxT=in_prefix)
  np.testing.assert_allclose(out, reference_attention(q, k, v, in_prefix_BxT=in_prefix),
                             rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize('scan_layers', [False, True])
def test_transformer_prefix_mask_is_bidirectional_inside_and_causal_after(scan_layers):
  import flax.linen as nn
  import jax
  from research.model import Transformer, default_model_config
  c = default_model_config()
  c.update(vocab_size=50, d_model=16, num_layers=2, num_heads=2, num_kv_heads=2, d_ff=32,
           max_seq_len=12, dtype='float32', attention_impl='xla', scan_layers=scan_layers)
  model = Transformer(c)
  tokens = jax.random.randint(jax.random.key(0), (1, 12), 0, 50)
  params = nn.unbox(model.init(jax.random.key(1), tokens)['params'])
  apply = lambda t, p=None: model.apply({'params': params}, t, in_prefix_BxT=p)
  causal = apply(tokens)
  np.testing.assert_allclose(apply(tokens, jnp.zeros((1, 12), bool)), causal, atol=1e-6)
  in_prefix = jnp.arange(12)[None] < 5
  base = apply(tokens, in_prefix)
  inside = apply(tokens.at[0, 3].set((tokens[0, 3] + 1) % 50), in_prefix)
  assert not np.allclose(inside[0, :3], base[0, :3])  # earlier positions see a prefix token
  after = apply(tokens.at[0, 8].set((tokens[0, 8] + 1) % 50), in_prefix)
  np.testing.assert_allclose(after[0, :8], base[0, :8], atol=1e-6)  # but not a later one
