"""Weight-only int8/int4 quantisation: round-trip error within half a quantisation step, memory
cut 4x/8x, and decoding with quantised params (dequantised in the jitted step) close to float."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.inference import generate
from research.inference import quantize
from research.model import Transformer
from tests.test_inference_cache import (ROPE_GQA, VARIANTS, forward, incremental_logits,
                                        init_params, random_tokens, tiny_config)


@pytest.mark.parametrize('shape,in_axes', [((48, 20), (0,)), ((61, 32), (1,)),
                                           ((4, 8, 33), (0, 1)), ((3, 37, 16), (1,))])
@pytest.mark.parametrize('bits,group_size', [(8, None), (8, 16), (4, None), (4, 8)])
def test_round_trip_error_is_at_most_half_a_step(shape, in_axes, bits, group_size):
  w = np.random.default_rng(len(shape) + bits).normal(size=shape).astype(np.float32)
  q = quantize.quantize_tensor(w, bits, group_size, in_axes)
  back = np.asarray(q.dequantize())
  assert back.shape == w.shape
  # The step of each weight's group, broadcast back to the weight's layout.
  step = np.asarray(quantize.QuantizedTensor(
      jnp.ones_like(q.values) if bits == 8 else jnp.full_like(q.values, 0x99), q.scales, q.shape,
      q.in_axes, bits).dequantize())
  assert np.all(np.abs(back - w) <= step / 2 + 1e-6)
  relative = np.linalg.norm(back - w) / np.linalg.norm(w)
  assert relative < (0.01 if bits == 8 else 0.2)


def test_params_tree_shrinks_and_keeps_vectors_in_float():
  c = tiny_config(d_model=64, d_ff=128, vocab_size=128, num_kv_heads=2)
  params = init_params(c, 40)
  floats = quantize.params_nbytes(params)
  q8 = quantize.quantize_params(params, bits=8)
  q4 = quantize.quantize_params(params, bits=4, group_size=32)
  assert q8['layers_0']['attn']['query'].values.dtype == jnp.int8
  assert q4['layers_0']['mlp']['wi'].values.dtype == jnp.uint8
  assert q8['layers_0']['attn_norm']['scale'].dtype == jnp.float32
  for name in ('query_bias', 'key_bias', 'value_bias'):  # [N, H] and [K, H]: biases, not matrices
    assert q8['layers_0']['attn'][name].dtype == jnp.float32, name
  assert quantize.params_nbytes(q8) < 0.3 * floats
  assert quantize.params_nbytes(q4) < 0.2 * floats

  scanned = init_params(tiny_config(scan_layers=True), 40)  # vectors of [L, D]: still vectors
  q8 = quantize.quantize_params(scanned, bits=8)['layers']
  assert quantize.is_quantized(q8['attn']['query'])
  assert q8['attn_norm']['scale'].dtype == jnp.float32


def test_boxed_params_straight_from_init_are_quantised():
  """`init` returns LogicallyPartitioned leaves; they were once passed through as float."""
  c = tiny_config(d_model=64, d_ff=128, vocab_size=128, num_kv_heads=2)
  boxed = Transformer(c).init(jax.random.key(1), jnp.zeros((1, 4), jnp.int32))['params']
  q8 = quantize.quantize_params(boxed, bits=8)
  assert quantize.is_quantized(q8['embed'])
  assert quantize.is_quantized(q8['layers_0']['mlp']['wi'])
  assert quantize.params_nbytes(q8) < 0.3 * quantize.params_nbytes(nn.unbox(boxed))


def test_mamba_decay_rates_stay_in_float():
  c = tiny_config(block_pattern='M', scan_layers=True)
  q8 = quantize.quantize_params(init_params(c, 40), bits=8)['layers']['mamba']
  assert quantize.is_quantized(q8['in_proj']) and quantize.is_quantized(q8['x_proj'])
  for name in ('A_log', 'D', 'dt_bias', 'conv_bias'):
    assert not quantize.is_quantized(q8[name]), name


@pytest.mark.parametrize('overrides', [ROPE_GQA, VARIANTS['learned_window5_scanned']])
def test_decoding_with_quantised_weights_is_close_to_float(overrides):
  c = tiny_config(**overrides)
  params = init_params(c, 41, scale=0.05)
  tokens = random_tokens(c, 41, length=14)
  full = np.asarray(forward(c, params, tokens))
  spread = full.std()
  cases = ((8, None, 0.03, 0.1), (4, 16, 0.3, 1.0)) if not c.scan_layers else ((8, 16, 0.03, 0.1),)
  for bits, group_size, rms_tol, max_tol in cases:
    qparams = quantize.quantize_params(params, bits, group_size)
    cached, _ = incremental_logits(c, qparams, tokens, [5, 1, 1, 5, 1, 1])
    diff = np.asarray(cached) - full
    print(f'int{bits}: rms {np.sqrt(np.mean(diff**2)) / spread:.4f}, '
          f'max {np.abs(diff).max() / spread:.4f} of the logits\' std')
    assert np.sqrt(np.mean(diff**2)) / spread < rms_tol
    assert np.abs(diff).max() / spread < max_tol
  if not c.scan_layers:  # `generate` takes quantised params as they are
    out = generate(c, quantize.quantize_params(params, 8), tokens, 5)
    assert out.shape == (2, 19)
