"""Hugging Face import/export (`research.hf`) against `transformers`' own float32 forward pass.

Tiny random GPT-2/Llama/Mistral/Mixtral models (norm weights perturbed so they are not ones and
zeros) are saved by transformers, read by `from_pretrained` and must give the same logits in our
Transformer; `save_pretrained` must then give transformers the same logits again.
"""

import json
import os

os.environ['HF_HUB_OFFLINE'] = '1'  # everything here is local; never reach the hub

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import hf
from research.model import Transformer, default_model_config

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

TOL = 1e-4
SMALL = dict(vocab_size=97, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=96, max_position_embeddings=64)
GPT2_SMALL = dict(vocab_size=97, n_embd=64, n_layer=2, n_head=4, n_positions=32)
CASES = {
    'gpt2_tied': ('gpt2', dict(GPT2_SMALL), 16, 0),
    'gpt2_untied_exact_gelu': ('gpt2', dict(GPT2_SMALL, tie_word_embeddings=False, n_inner=80,
                                            activation_function='gelu', layer_norm_epsilon=1e-6),
                               7, 1),
    'llama_gqa_untied': ('llama', dict(SMALL, num_key_value_heads=2), 16, 2),
    'llama_mha_tied_theta5e5': ('llama', dict(SMALL, num_key_value_heads=4,
                                              tie_word_embeddings=True,
                                              rope_parameters={'rope_type': 'default',
                                                               'rope_theta': 500000.0}), 9, 3),
    'llama_mqa_head_dim32': ('llama', dict(SMALL, num_key_value_heads=1, head_dim=32,
                                           rope_parameters={'rope_type': 'default',
                                                            'rope_theta': 100.0}), 12, 4),
    'llama_biases': ('llama', dict(SMALL, num_key_value_heads=2, attention_bias=True,
                                   mlp_bias=True, rms_norm_eps=1e-5), 5, 5),
    'mistral_window4': ('mistral', dict(SMALL, num_key_value_heads=2, sliding_window=4), 12, 6),
    'mixtral_top2_gqa': ('mixtral', dict(SMALL, num_key_value_heads=2, num_local_experts=4,
                                         num_experts_per_tok=2), 16, 7),
    'mixtral_top1_mqa_tied': ('mixtral', dict(SMALL, num_key_value_heads=1, num_local_experts=3,
                                              num_experts_per_tok=1, tie_word_embeddings=True,
                                              intermediate_size=40), 12, 8),
    'mixtral_top2_of8_window5': ('mixtral', dict(SMALL, num_key_value_heads=2,
                                                 num_local_experts=8, num_experts_per_tok=2,
                                                 sliding_window=5, head_dim=24), 11, 9),
}
CONFIG_CLASSES = {'gpt2': 'GPT2Config', 'llama': 'LlamaConfig', 'mistral': 'MistralConfig',
                  'mixtral': 'MixtralConfig'}


def _hf_model(kind, kwargs, seed):
  """Random transformers model: weights, biases ~ N(0, 0.1^2); norm scales ~ 1 + N(0, 0.2^2)."""
  torch.manual_seed(seed)
  config = getattr(transformers, CONFIG_CLASSES[kind])(bos_token_id=None, eos_token_id=None,
                                                       **kwargs)
  model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation='eager',
                                                        dtype=torch.float32)
  with torch.no_grad():
    for name, p in model.named_parameters():
      is_norm = any(s in name for s in ('ln_', 'norm', 'layernorm'))
      if is_norm and name.endswith('weight'):
        p.copy_(1.0 + 0.2 * torch.randn_like(p))
      else:
        p.copy_(0.1 * torch.randn_like(p))
  return model.eval()


def _hf_logits(model, tokens):
  with torch.no_grad():
    return model(torch.from_numpy(tokens)).logits.numpy()


def _hf_load(directory):
  return transformers.AutoModelForCausalLM.from_pretrained(
      directory, attn_implementation='eager', dtype=torch.float32, local_files_only=True).eval()


def _our_logits(config, params, tokens):
  return np.asarray(Transformer(config).apply({'params': params}, jnp.asarray(tokens)))


def _tokens(vocab_size, seq_len, seed):
  return np.random.default_rng(seed).integers(0, vocab_size, (2, seq_len), dtype=np.int64)


def _max_diff(a, b):
  assert a.shape == b.shape
  return float(np.max(np.abs(a - b)))


@pytest.mark.parametrize('case', sorted(CASES))
def test_import_then_export_matches_transformers(case, tmp_path):
  kind, kwargs, seq_len, seed = CASES[case]
  model = _hf_model(kind, kwargs, seed)
  tokens = _tokens(kwargs['vocab_size'], seq_len, seed)
  want = _hf_logits(model, tokens)
  assert want.std() > 0.3  # the weights are large enough for a wrong mapping to show
  model.save_pretrained(tmp_path / 'theirs', safe_serialization=True)

  config, params = hf.from_pretrained(tmp_path / 'theirs')
  shapes = jax.eval_shape(lambda: Transformer(config).init(jax.random.PRNGKey(0), tokens[:, :1]))
  assert (jax.tree.map(lambda x: x.shape, params) ==
          jax.tree.map(lambda x: x.shape, nn.unbox(shapes['params'])))
  diff_in = _max_diff(_our_logits(config, params, tokens), want)

  hf.save_pretrained(config, params, tmp_path / 'ours')
  diff_out = _max_diff(_hf_logits(_hf_load(tmp_path / 'ours'), tokens), want)
  print(f'{case}: import max|diff|={diff_in:.2e}, export max|diff|={diff_out:.2e}')
  assert diff_in < TOL
  assert diff_out < TOL


def test_sharded_safetensors_import(tmp_path):
  kind, kwargs, seq_len, seed = CASES['llama_gqa_untied']
  model = _hf_model(kind, kwargs, seed)
  model.save_pretrained(tmp_path, safe_serialization=True, max_shard_size='50KB')
  assert (tmp_path / hf.WEIGHTS_INDEX_FILE).exists()
  tokens = _tokens(kwargs['vocab_size'], seq_len, seed)
  config, params = hf.from_pretrained(tmp_path)
  assert _max_diff(_our_logits(config, params, tokens), _hf_logits(model, tokens)) < TOL


def _our_config(style, **overrides):
  c = default_model_config()
  c.update(vocab_size=97, d_model=64, num_layers=3, num_heads=4, d_ff=96, max_seq_len=32,
           dtype='float32', attention_impl='xla')
  if style == 'llama':
    c.update(position='rope', norm='rmsnorm', mlp='swiglu', use_bias=False, num_kv_heads=2,
             tied_embedding=False, rope_base=1000.0)
  c.update(overrides)
  return c


@pytest.mark.parametrize('style', ['gpt2', 'llama'])
def test_scanned_boxed_params_export(style, tmp_path):
  config = _our_config(style, scan_layers=True)
  tokens = _tokens(config.vocab_size, 11, 7)
  # Boxed (logically partitioned) shapes from an abstract init; every leaf, norms included, random.
  boxed = jax.eval_shape(lambda: Transformer(config).init(jax.random.PRNGKey(7), tokens))['params']
  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(nn.unbox(boxed))
  keys = jax.random.split(jax.random.PRNGKey(8), len(paths_and_leaves))
  noisy = [0.1 * jax.random.normal(key, x.shape) + (path[-1].key == 'scale')
           for (path, x), key in zip(paths_and_leaves, keys)]
  boxed = jax.tree.map(lambda box, x: box.replace_boxed(x), boxed,
                       jax.tree.unflatten(treedef, noisy),
                       is_leaf=lambda x: hasattr(x, 'replace_boxed'))
  assert hasattr(boxed['layers']['attn']['query'], 'unbox')
  want = _our_logits(config, nn.unbox(boxed), tokens)
  assert want.std() > 0.3

  hf.save_pretrained(config, boxed, tmp_path)
  diff = _max_diff(_hf_logits(_hf_load(tmp_path), tokens), want)
  print(f'scanned {style}: export max|diff|={diff:.2e}')
  assert diff < TOL
  _, params = hf.from_pretrained(tmp_path)  # and back: the unstacked layers are the scanned ones
  np.testing.assert_array_equal(params['layers_2']['mlp']['wo'],
                                nn.unbox(boxed)['layers']['mlp']['wo'][2])


@pytest.mark.parametrize('field,value', [('position', 'sinusoidal'), ('norm_position', 'post'),
                                         ('final_norm', False), ('mlp', 'swiglu'),
                                         ('num_kv_heads', 2), ('use_bias', False),
                                         ('parametrization', 'mup')])
def test_export_without_hf_equivalent_names_field(field, value, tmp_path):
  config = _our_config('gpt2', **{field: value})
  with pytest.raises(ValueError, match=f'model.{field}='):
    hf.save_pretrained(config, {}, tmp_path)


@pytest.mark.parametrize('field,value', [('num_shared_experts', 1), ('moe_every', 3),
                                         ('expert_capacity_factor', 1.25),
                                         ('router_renormalize', False), ('use_bias', True),
                                         ('moe_d_ff', 40)])
def test_moe_export_without_mixtral_equivalent_names_field(field, value, tmp_path):
  config = _our_config('llama', num_experts=4, **{field: value})
  with pytest.raises(ValueError, match=f'model.{field}=.*mixtral'):
    hf.save_pretrained(config, {}, tmp_path)


def test_export_llama_style_needs_rmsnorm(tmp_path):
  with pytest.raises(ValueError, match='model.norm='):
    hf.save_pretrained(_our_config('llama', norm='layernorm'), {}, tmp_path)


def _write_config(directory, **fields):
  directory.mkdir(exist_ok=True)
  (directory / hf.CONFIG_FILE).write_text(json.dumps(fields))


def test_missing_config_json(tmp_path):
  with pytest.raises(ValueError, match='config.json'):
    hf.from_pretrained(tmp_path)


def test_missing_weights(tmp_path):
  _write_config(tmp_path, model_type='gpt2', **GPT2_SMALL)
  with pytest.raises(ValueError, match='model.safetensors'):
    hf.from_pretrained(tmp_path)


def test_pickle_only_checkpoint_refused(tmp_path):
  _write_config(tmp_path, model_type='gpt2', **GPT2_SMALL)
  (tmp_path / 'pytorch_model.bin').write_bytes(b'never unpickled')
  with pytest.raises(ValueError, match='pickle'):
    hf.from_pretrained(tmp_path)


@pytest.mark.parametrize('fields,match', [
    (dict(model_type='bert'), 'model_type'),
    (dict(SMALL, model_type='llama', rope_parameters={'rope_type': 'llama3', 'factor': 8.0,
                                                      'rope_theta': 5e5}), 'rope_type'),
    (dict(SMALL, model_type='llama', rope_scaling={'type': 'linear', 'factor': 2.0}),
     'rope_scaling'),
    (dict(SMALL, model_type='llama', attention_bias=True, mlp_bias=False), 'mlp_bias'),
    (dict(SMALL, model_type='llama', hidden_act='gelu'), 'hidden_act'),
    (dict(GPT2_SMALL, model_type='gpt2', activation_function='relu'), 'activation_function'),
    (dict(SMALL, model_type='mixtral', num_local_experts=4, num_experts_per_tok=2,
          router_jitter_noise=0.1), 'router_jitter_noise'),
    (dict(GPT2_SMALL, model_type='gpt2', scale_attn_by_inverse_layer_idx=True),
     'scale_attn_by_inverse_layer_idx'),
])
def test_unsupported_config_refused(fields, match, tmp_path):
  _write_config(tmp_path, **fields)
  with pytest.raises(ValueError, match=match):
    hf.from_pretrained(tmp_path)


def test_shape_mismatch_names_tensor(tmp_path):
  kind, kwargs, _, seed = CASES['gpt2_tied']
  _hf_model(kind, kwargs, seed).save_pretrained(tmp_path, safe_serialization=True)
  config = json.loads((tmp_path / hf.CONFIG_FILE).read_text())
  _write_config(tmp_path, **dict(config, vocab_size=98))
  with pytest.raises(ValueError, match='wte.weight'):
    hf.from_pretrained(tmp_path)
