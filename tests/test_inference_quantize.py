"""Weight-only int8/int4 quantisation: round-trip error within half a quantisation step, memory
cut 4x/8x, the matmul that reads quantised values (CPU kernel) equal to the dequantised product,
and decoding with quantised params close to float."""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.inference import cache as cache_lib
from research.inference import cpu_kernels
from research.inference import generate
from research.inference import quantize
from research.inference.decoder import decoder_for
from research.model import Transformer
from research.model import weights
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


@pytest.mark.parametrize('shape,in_axes', [((48, 20), (0,)), ((61, 32), (1,)),
                                           ((4, 8, 33), (0, 1)), ((3, 37, 16), (1,))])
@pytest.mark.parametrize('bits,group_size', [(8, None), (8, 16), (4, None), (4, 8)])
@pytest.mark.parametrize('rows', [1, 5, quantize.KERNEL_MAX_ROWS + 3])
def test_matmul_equals_the_dequantised_product(shape, in_axes, bits, group_size, rows):
  """Through the CPU kernel (few rows) and the float path (more rows than KERNEL_MAX_ROWS)."""
  rng = np.random.default_rng(rows + bits)
  q = quantize.quantize_tensor(rng.normal(size=shape), bits, group_size, in_axes)
  x = rng.normal(size=(rows, *q.in_dims)).astype(np.float32)
  w = np.asarray(q.dequantize(), np.float64)
  order = [*in_axes, *(a for a in range(len(shape)) if a not in in_axes)]
  want = np.tensordot(x, np.transpose(w, order), axes=len(in_axes))
  got = np.asarray(jax.jit(q.matmul)(jnp.asarray(x)))
  assert got.shape == (rows, *q.out_dims) == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_take_gives_dequantised_rows_and_stacked_layers_quantise_one_by_one():
  rng = np.random.default_rng(3)
  q = quantize.quantize_tensor(rng.normal(size=(61, 32)), 4, 8, (1,))
  ids = np.array([[0, 60, 7], [7, 7, 1]])
  np.testing.assert_allclose(np.asarray(q.take(jnp.asarray(ids))),
                             np.asarray(q.dequantize())[ids], rtol=1e-6)
  w_LxDxNxH = rng.normal(size=(3, 16, 2, 5))
  stacked = quantize.quantize_tensor(w_LxDxNxH, 8, None, (0,), stacked=1)
  assert stacked.values.shape == (3, 10, 1, 16) and stacked.shape == (16, 2, 5)
  for layer in range(3):
    one = quantize.quantize_tensor(w_LxDxNxH[layer], 8, None, (0,))
    np.testing.assert_array_equal(np.asarray(stacked.values[layer]), np.asarray(one.values))
    np.testing.assert_array_equal(np.asarray(stacked.dequantize()[layer]),
                                  np.asarray(one.dequantize()))
  with pytest.raises(ValueError, match='take'):
    quantize.quantize_tensor(rng.normal(size=(8, 6)), 8, None, (0,)).take(jnp.zeros(2, int))


KERNEL_CASES = {  # tied and untied; scanned; biases or none; an MoE layer's shared expert; MTP
    'gpt2_tied': dict(ROPE_GQA),
    'llama_scanned': dict(VARIANTS['rope_gqa_llama'], scan_layers=True),
    'moe_shared_expert': dict(num_experts=4, experts_per_token=2, num_shared_experts=1,
                              moe_d_ff=16),
    'mtp_head': dict(mtp_heads=1),
}


@pytest.mark.parametrize('name', sorted(KERNEL_CASES))
@pytest.mark.parametrize('bits,group_size', [(8, None), (4, 16)])
def test_decoding_reads_quantised_matrices_through_the_kernel(name, bits, group_size):
  """The model's matrices reach the program quantised and are multiplied by the kernel; the
  logits equal those of the same (dequantised) weights in float."""
  c = tiny_config(**KERNEL_CASES[name])
  qparams = quantize.quantize_params(init_params(c, 43, scale=0.05), bits, group_size)
  variables = quantize.model_variables(qparams)
  kept = flax.traverse_util.flatten_dict(variables[weights.QUANTIZED])
  assert all(quantize.is_quantized(x) for x in kept.values())
  leaf_names = {path[-1] for path in kept}
  assert {'embed', 'query', 'key', 'value', 'out'} <= leaf_names
  assert ('unembed' in leaf_names) == (not c.tied_embedding)
  floats = flax.traverse_util.flatten_dict(variables['params'])
  assert not any(quantize.is_quantized(x) for x in floats.values())
  if c.num_experts:  # the [E, ., .] expert stacks are dequantised; the shared expert is kept
    assert any(p[-2:] == ('mlp', 'wo') for p in floats)
    assert any(p[-3:] == ('mlp', 'shared', 'wo') for p in kept)

  tokens = random_tokens(c, 43, length=6)
  decoder = decoder_for(c)
  positions = jnp.broadcast_to(jnp.arange(6), tokens.shape)
  program = str(jax.make_jaxpr(decoder._extend)(
      qparams, cache_lib.init_cache(c, 2, 16), jnp.asarray(tokens), positions))
  if cpu_kernels.available():
    assert f'research_int{bits}_matmul' in program
  got, _ = incremental_logits(c, qparams, tokens, [3, 1, 2], slots=16)
  want, _ = incremental_logits(c, quantize.dequantize_params(qparams), tokens, [3, 1, 2],
                               slots=16)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4,
                             atol=1e-4 * float(np.abs(want).max()))
