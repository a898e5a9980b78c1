"""KV-cache decoding equals recomputing the whole sequence, for every position type, GQA/MQA,
sliding windows and scanned layers; the cache is [B, S, K, H] with logical axis names and is
sharded by the training rules on a mesh; one compiled step serves every length; training never
sees a cache."""

import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.inference import cache as cache_lib
from research.inference import generate
from research.inference.decoder import decoder_for
from research.model import Transformer, default_model_config

TOL = 1e-5


def tiny_config(**overrides):
  """A 2-layer float32 model small enough that every test here compiles in about a second."""
  c = default_model_config()
  c.update(vocab_size=61, d_model=32, num_layers=2, num_heads=4, num_kv_heads=4, d_ff=48,
           max_seq_len=48, dtype='float32', attention_impl='xla')
  c.update(overrides)
  return c


def init_params(c, seed: int, scale: float = 0.3):
  """Random params, every leaf perturbed so norms and biases are not ones and zeros and the
  logits are far from uniform (a clear argmax)."""
  unscanned = c.copy_and_resolve_references()
  unscanned.scan_layers = False
  shapes = jax.eval_shape(
      lambda: Transformer(unscanned).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32)))
  rng = np.random.default_rng(seed)
  params = jax.tree.map(
      lambda s: jnp.asarray((s.ndim == 1) + rng.normal(0, scale, s.shape), jnp.float32),
      nn.unbox(shapes['params']))
  if c.scan_layers:
    layers = [params.pop(f'layers_{i}') for i in range(c.num_layers)]
    params['layers'] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
  return params


_FORWARD = {}


def forward(c, params, tokens_BxT):
  """The training model's logits (jitted once per config): the reference decoding must match."""
  key = c.to_json()
  if key not in _FORWARD:
    _FORWARD[key] = jax.jit(lambda p, x: Transformer(c).apply({'params': p}, x))
  return _FORWARD[key](params, jnp.asarray(tokens_BxT))


def random_tokens(c, seed, batch=2, length=12):
  return np.asarray(jax.random.randint(jax.random.key(seed + 7), (batch, length), 0,
                                       c.vocab_size), np.int32)


ROPE_GQA = dict(position='rope', num_kv_heads=2)  # the config most tests share (one compile)
VARIANTS = {  # every position type; MHA, GQA and MQA; sliding windows; scanned layers
    'learned_window5_scanned': dict(sliding_window=5, scan_layers=True),
    'sinusoidal_gqa_window3': dict(position='sinusoidal', num_kv_heads=2, sliding_window=3),
    'rope_gqa_llama': dict(ROPE_GQA, norm='rmsnorm', mlp='swiglu', use_bias=False,
                           tied_embedding=False),
    'none_mqa_postnorm': dict(position='none', num_kv_heads=1, norm_position='post'),
}


def incremental_logits(c, params, tokens_BxT, chunks, slots=32):
  """Logits from feeding `tokens_BxT` to the cached model in chunks of the given sizes."""
  decoder = decoder_for(c)
  cache = cache_lib.init_cache(c, tokens_BxT.shape[0], slots)
  out, start = [], 0
  for size in chunks:
    piece = jnp.asarray(tokens_BxT[:, start:start + size])
    positions = jnp.broadcast_to(jnp.arange(start, start + size), piece.shape)
    logits, cache = decoder.extend(params, cache, piece, positions)
    out.append(logits)
    start += size
  return jnp.concatenate(out, axis=1), cache


def assert_cached_decoding_matches_recomputation(c):
  """Chunks of 5 and 1 tokens through the cache give the training model's logits."""
  params = init_params(c, 1)
  tokens = random_tokens(c, 1, length=14)
  full = forward(c, params, tokens)
  assert float(jnp.std(full)) > 0.5
  cached, cache = incremental_logits(c, params, tokens, [5, 1, 1, 5, 1, 1])
  np.testing.assert_allclose(np.asarray(cached), np.asarray(full), atol=TOL, rtol=TOL)
  np.testing.assert_array_equal(np.asarray(cache['index']), [14, 14])


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_cached_decoding_matches_full_recomputation(name):
  assert_cached_decoding_matches_recomputation(tiny_config(**VARIANTS[name]))


def test_model_call_without_positions_follows_the_cache_index():
  c = tiny_config(**ROPE_GQA)
  params = init_params(c, 2)
  tokens = random_tokens(c, 2, length=9)
  model = Transformer(c, decode=True)
  apply = jax.jit(lambda p, cache, x: model.apply({'params': p, 'cache': cache}, x,
                                                  mutable=['cache']))
  cache = cache_lib.init_cache(c, 2, 16)
  outs = []
  for piece in (tokens[:, :4], tokens[:, 4:5], tokens[:, 5:]):
    logits, updated = apply(params, cache, piece)
    cache = updated['cache']
    outs.append(logits)
  full = forward(c, params, tokens)
  np.testing.assert_allclose(np.concatenate(outs, 1), full, atol=TOL, rtol=TOL)


def test_ragged_rows_decode_at_their_own_positions():
  c = tiny_config(**ROPE_GQA)
  params = init_params(c, 3)
  prompts = [random_tokens(c, s, batch=1, length=n)[0] for s, n in ((3, 5), (4, 9), (5, 2))]
  padded = np.zeros((3, 9), np.int32)
  for row, p in enumerate(prompts):
    padded[row, :len(p)] = p
  got = generate(c, params, padded, 6, prompt_lengths=[5, 9, 2])
  for row, p in enumerate(prompts):
    alone = generate(c, params, p[None], 6)[0]
    np.testing.assert_array_equal(got[row, :len(p) + 6], alone)
    assert (got[row, len(p) + 6:] == 0).all()


@pytest.mark.parametrize('overrides', [ROPE_GQA, VARIANTS['rope_gqa_llama']])
def test_prefill_computes_logits_at_each_rows_last_prompt_token_only(overrides):
  c = tiny_config(**overrides)  # tied and untied output layers
  params = init_params(c, 6)
  tokens = random_tokens(c, 6, batch=3, length=12)
  lengths = jnp.asarray([12, 5, 1], jnp.int32)
  decoder = decoder_for(c)
  last = jax.jit(decoder.last_logits)
  cache = cache_lib.init_cache(c, 3, 16)
  got, _ = last(params, cache, jnp.asarray(tokens), lengths)
  full = forward(c, params, tokens)
  want = np.stack([full[row, n - 1] for row, n in enumerate(np.asarray(lengths))])
  np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)
  # The program asks for [3, 12, D] hidden states but never [3, 12, V] logits.
  text = last.lower(params, cache, jnp.asarray(tokens), lengths).as_text()
  assert f'3x12x{c.d_model}xf32' in text and f'3x12x{c.vocab_size}xf32' not in text


def test_cache_is_kv_heads_wide_with_logical_axes():
  c = tiny_config(position='rope', num_kv_heads=1, num_heads=4)
  cache = cache_lib.init_cache(c, 3, 20)
  assert cache['layers_0']['attn']['key'].shape == (3, 1, 8, 20)  # MQA: one head cached
  assert cache['layers_0']['attn']['value'].shape == (3, 1, 20, 8)
  assert cache['index'].shape == (3,)
  axes = cache_lib.logical_axes(c)
  assert tuple(axes['layers_1']['attn']['value']) == ('batch', 'kv_heads', 'length', 'head_dim')
  scanned = cache_lib.init_cache(tiny_config(scan_layers=True), 3, 20)
  assert scanned['layers']['attn']['key'].shape == (2, 3, 4, 8, 20)
  assert cache_lib.batch_axes(tiny_config(scan_layers=True))['layers']['attn']['key'] == 1


def test_one_compiled_step_serves_every_length():
  c = tiny_config(**ROPE_GQA)
  params = init_params(c, 4)
  tokens = random_tokens(c, 4, length=5)
  decoder = decoder_for(c)
  generate(c, params, tokens, 2)
  compiled = decoder.step._cache_size(), decoder.prefill._cache_size()
  for n in (3, 9, 20, 31):  # the same cache and prompt buckets: nothing new to compile
    generate(c, params, tokens, n)
  assert (decoder.step._cache_size(), decoder.prefill._cache_size()) == compiled


def test_training_path_has_no_cache():
  c = tiny_config()
  variables = jax.eval_shape(
      lambda: Transformer(c).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32)))
  assert set(variables) == {'params'}
  text = jax.jit(lambda p, x: Transformer(c).apply({'params': p}, x)).lower(
      nn.unbox(variables['params']), jax.ShapeDtypeStruct((2, 8), jnp.int32)).as_text()
  assert 'scatter' not in text


SHARDED_RUN = """
import flax.linen as nn, jax, numpy as np
from research.inference import cache as cache_lib, generate
from research.parallel.rules import DEFAULT_RULES
from research.model.init import abstract_params
from research.parallel.sharding import logical_shardings
from tests.test_inference_cache import ROPE_GQA, init_params, random_tokens, tiny_config
c = tiny_config(vocab_size=64, **ROPE_GQA)  # vocab split over tensor=2
params, tokens = init_params(c, 6), random_tokens(c, 6, batch=4, length=5)
want = generate(c, params, tokens, 8)
mesh = jax.sharding.Mesh(np.array(jax.devices()).reshape(2, 1, 2), ('data', 'fsdp', 'tensor'),
                         axis_types=(jax.sharding.AxisType.Auto,) * 3)
with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_RULES):
  key = cache_lib.init_cache(c, 4, 16)['layers_0']['attn']['key']
  want_sharding = cache_lib.cache_shardings(c, mesh, DEFAULT_RULES)['layers_0']['attn']['key']
  assert key.sharding.is_equivalent_to(want_sharding, key.ndim)
  print(key.sharding.spec)
  shardings = logical_shardings(abstract_params(c, boxed=True), mesh, DEFAULT_RULES)
  got = generate(c, jax.device_put(params, shardings), tokens, 8)
print((got == want).all())
"""


def test_decoding_on_a_data_and_tensor_parallel_mesh_matches_one_device():
  root = pathlib.Path(__file__).parents[1]
  env = dict(os.environ, PYTHONPATH=str(root), JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=4')
  result = subprocess.run([sys.executable, '-c', SHARDED_RUN], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  spec, equal = result.stdout.strip().splitlines()[-2:]
  assert spec == "P('data', 'tensor')"  # batch over data (fsdp is 1), kv_heads over tensor
  assert equal == 'True'


@pytest.mark.parametrize('kwargs,match', [
    (dict(prompt_tokens_BxT=np.zeros((3,), np.int32)), 'prompt_tokens_BxT'),
    (dict(prompt_tokens_BxT=np.full((1, 3), 99, np.int32)), 'prompt_tokens_BxT'),
    (dict(max_new_tokens=60), 'max_new_tokens'),
    (dict(max_new_tokens=-1), 'max_new_tokens'),
    (dict(temperature=-1.0), 'temperature'),
    (dict(top_p=0.0), 'top_p'),
    (dict(top_k=-2), 'top_k'),
    (dict(prompt_lengths=[4]), 'prompt_lengths'),
])
def test_bad_arguments_are_named(kwargs, match):
  c = tiny_config(**ROPE_GQA)
  args = dict(prompt_tokens_BxT=np.zeros((1, 3), np.int32), max_new_tokens=4)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    generate(c, init_params(c, 0), **args)
