"""The Mamba mixer: parallel vs recurrent scan, a numpy loop, hybrid stacks, config and counts."""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from research.model import Transformer, default_model_config, validate_model_config
from research.model import counting, mamba
from research.model.init import init_params


def _mamba_config(pattern='M', **overrides):
  c = default_model_config()
  c.update(vocab_size=97, d_model=16, num_layers=2, num_heads=2, num_kv_heads=2, d_ff=32,
           max_seq_len=32, position='none', norm='rmsnorm', block_pattern=pattern,
           mamba_d_state=4, mamba_d_conv=3, mamba_expand=2, mamba_dt_rank=3)
  c.update(overrides)
  return c


def test_parallel_and_recurrent_scans_agree_on_random_inputs():
  keys = jax.random.split(jax.random.key(0), 6)
  b, t, f, x = 2, 13, 6, 5
  dt = jax.nn.softplus(jax.random.normal(keys[0], (b, t, f)))
  a = -jnp.exp(jax.random.normal(keys[1], (f, x)))
  bb, cc = jax.random.normal(keys[2], (b, t, x)), jax.random.normal(keys[3], (b, t, x))
  inputs = jax.random.normal(keys[4], (b, t, f))
  h0 = jax.random.normal(keys[5], (b, f, x))
  h_par, y_par = mamba.parallel_scan(dt, a, bb, cc, inputs, h0)
  h_rec, y_rec = mamba.recurrent_scan(dt, a, bb, cc, inputs, h0)
  np.testing.assert_allclose(h_par, h_rec, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(y_par, y_rec, rtol=1e-5, atol=1e-5)
  # Splitting the sequence and carrying the state over gives the same states.
  h_first, _ = mamba.parallel_scan(dt[:, :6], a, bb[:, :6], cc[:, :6], inputs[:, :6], h0)
  h_rest, _ = mamba.parallel_scan(dt[:, 6:], a, bb[:, 6:], cc[:, 6:], inputs[:, 6:],
                                  h_first[:, -1])
  np.testing.assert_allclose(jnp.concatenate([h_first, h_rest], 1), h_par, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('use_bias', [False, True])
def test_mixer_matches_a_numpy_loop(use_bias):
  module = mamba.Mamba(d_state=4, d_conv=3, expand=2, dt_rank=3, use_bias=use_bias)
  x_BxTxD = jax.random.normal(jax.random.key(1), (2, 9, 8))
  params = nn.unbox(module.init(jax.random.key(2), x_BxTxD)['params'])
  # Fresh random values everywhere (the init has zero biases and structured A, D).
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  params = jax.tree.unflatten(tree, [0.5 * jax.random.normal(k, v.shape)
                                     for k, v in zip(keys, leaves)])
  got = module.apply({'params': params}, x_BxTxD)
  want = mamba.numpy_reference(params, np.asarray(x_BxTxD), 4, 3, 3)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_later_token_does_not_change_earlier_outputs():
  c = _mamba_config('MA', position='rope')
  params = init_params(c, seed=0)
  tokens = jax.random.randint(jax.random.key(4), (2, 12), 0, c.vocab_size)
  changed = tokens.at[:, 7].set((tokens[:, 7] + 1) % c.vocab_size)
  logits = Transformer(c).apply({'params': params}, tokens)
  logits_changed = Transformer(c).apply({'params': params}, changed)
  np.testing.assert_allclose(logits[:, :7], logits_changed[:, :7], rtol=1e-5, atol=1e-5)
  assert not np.allclose(logits[:, 7:], logits_changed[:, 7:])


def test_weight_decay_spares_the_state_decay_rates_and_the_skip():
  from research.train.optimizer import decay_mask
  mask = flax.traverse_util.flatten_dict(decay_mask(init_params(_mamba_config('M'))))
  decayed = {path[-1] for path, keep in mask.items() if keep}
  spared = {path[-1] for path, keep in mask.items() if not keep}
  assert {'A_log', 'D', 'dt_bias', 'conv_bias'} <= spared, spared
  assert {'A_log', 'D'}.isdisjoint(decayed) and decayed, decayed


@pytest.mark.parametrize('pattern', ['M', 'MA', 'AM'])
def test_param_counts_match_the_tree(pattern):
  for use_bias in (False, True):
    c = _mamba_config(pattern, num_layers=3, use_bias=use_bias, mamba_dt_rank=0)
    assert counting.count_params(init_params(c)) == counting.predict_param_counts(c)


def test_flops_of_mamba_layers_have_no_context_term():
  c = _mamba_config('M')
  short, long = counting.flops_report(c, 16), counting.flops_report(c, 1024)
  assert short == long
  hybrid = _mamba_config('MA')
  assert counting.flops_report(hybrid, 16)['palm'] < counting.flops_report(hybrid, 1024)['palm']
  # A Mamba layer's PaLM count is 6 x its matmul weights (no attention term).
  weights = counting.matmul_weights(c)
  assert counting.palm_flops_per_token(c, 64) == 6 * weights


def test_scanned_pure_mamba_stack_equals_the_unrolled_one():
  c = _mamba_config('M', num_layers=3)
  scanned = ml_collections.ConfigDict(c.to_dict())
  scanned.scan_layers, scanned.remat = True, 'full'
  params = init_params(c, seed=5)
  stacked = dict(params)
  layers = [stacked.pop(f'layers_{i}') for i in range(3)]
  stacked['layers'] = jax.tree.map(lambda *v: jnp.stack(v), *layers)
  tokens = jax.random.randint(jax.random.key(6), (2, 10), 0, c.vocab_size)
  want = Transformer(c).apply({'params': params}, tokens)
  got = Transformer(scanned).apply({'params': stacked}, tokens)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  grads = jax.grad(lambda p: Transformer(scanned).apply({'params': p}, tokens).mean())(stacked)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize('field,value,match', [
    ('block_pattern', 'MXA', 'model.block_pattern'),
    ('block_pattern', '', 'model.block_pattern'),
    ('mamba_d_state', 0, 'model.mamba_d_state'),
    ('mamba_d_conv', -1, 'model.mamba_d_conv'),
    ('mamba_expand', 0, 'model.mamba_expand'),
    ('mamba_dt_rank', -2, 'model.mamba_dt_rank'),
])
def test_bad_mamba_fields_are_refused_naming_the_field(field, value, match):
  c = _mamba_config()
  c[field] = value
  with pytest.raises(ValueError, match=match):
    validate_model_config(c)


def test_scanning_a_mixed_pattern_and_moe_with_mamba_are_refused():
  with pytest.raises(ValueError, match='model.block_pattern.*scan'):
    validate_model_config(_mamba_config('MMMA', scan_layers=True))
  with pytest.raises(ValueError, match='model.num_experts'):
    validate_model_config(_mamba_config('M', num_experts=2))
  validate_model_config(_mamba_config('M', scan_layers=True))
