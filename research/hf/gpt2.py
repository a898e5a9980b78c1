"""GPT-2 (`GPT2LMHeadModel`): learned positions, pre-LayerNorm, GELU MLP, biases everywhere.

Conv1D stores weights [in, out] (ours too) and fuses q, k, v into `c_attn` [D, 3D].
"""

from __future__ import annotations

import ml_collections

from research.hf import common
from research.hf.tables import Rule, fused, reshaped, same

MODEL_TYPES = ('gpt2',)
# activation_function of GPT-2 -> our gelu_approximate; gelu_new, gelu_fast and gelu_pytorch_tanh
# are the same tanh approximation.
ACTIVATIONS = {'gelu_new': True, 'gelu_fast': True, 'gelu_pytorch_tanh': True, 'gelu': False}
# Buffers of old checkpoints (the causal mask) that hold no weights.
IGNORED = (r'transformer\.h\.\d+\.attn\.(bias|masked_bias)',)


def normalise_names(arrays: dict) -> dict:
  """The original GPT-2 checkpoints name tensors without the 'transformer.' prefix."""
  return {(name if name.startswith(('transformer.', 'lm_head.')) else f'transformer.{name}'): x
          for name, x in arrays.items()}


def config_from_hf(hf: dict, where: str) -> ml_collections.ConfigDict:
  """Our model config from a GPT-2 config.json."""
  for name, ok in (('scale_attn_weights', True), ('scale_attn_by_inverse_layer_idx', False),
                   ('add_cross_attention', False)):
    value = hf.get(name, ok)
    if value != ok:
      common.unsupported(where, name, value, f'only {ok} matches our attention')
  activation = common.field(hf, where, 'activation_function', 'gelu_new')
  if activation not in ACTIVATIONS:
    common.unsupported(where, 'activation_function', activation,
                       f'expected one of {sorted(ACTIVATIONS)}')
  c = common.base_config(hf, where)
  c.vocab_size = common.field(hf, where, 'vocab_size')
  c.d_model = common.field(hf, where, 'n_embd')
  c.num_layers = common.field(hf, where, 'n_layer')
  c.num_heads = c.num_kv_heads = common.field(hf, where, 'n_head')
  c.head_dim = 0
  c.d_ff = common.field(hf, where, 'n_inner', 4 * c.d_model)
  c.max_seq_len = common.field(hf, where, 'n_positions')
  c.position = 'learned'
  c.norm = 'layernorm'
  c.norm_eps = float(common.field(hf, where, 'layer_norm_epsilon', 1e-5))
  c.norm_position = 'pre'
  c.final_norm = True
  c.mlp = 'gelu'
  c.gelu_approximate = ACTIVATIONS[activation]
  c.tied_embedding = bool(common.field(hf, where, 'tie_word_embeddings', True))
  c.use_bias = True
  c.sliding_window = 0
  return c


def exportable(c: ml_collections.ConfigDict) -> dict:
  """The fields a config needs to be a GPT-2 (the caller names any that differ)."""
  want = {'norm': 'layernorm', 'mlp': 'gelu', 'use_bias': True, 'num_kv_heads': c.num_heads,
          'head_dim': 0, 'sliding_window': 0}
  if c.head_dim == c.d_model // c.num_heads:
    want['head_dim'] = c.head_dim
  return want


def config_to_hf(c: ml_collections.ConfigDict, model_type: str) -> dict:
  """A GPT-2 config.json for our model config."""
  v, d, n, _, _, f = common.dims(c)
  return {
      'architectures': ['GPT2LMHeadModel'], 'model_type': model_type, 'vocab_size': v,
      'n_embd': d, 'n_layer': c.num_layers, 'n_head': n, 'n_inner': f,
      'n_positions': c.max_seq_len, 'layer_norm_epsilon': c.norm_eps,
      'activation_function': 'gelu_new' if c.gelu_approximate else 'gelu',
      'tie_word_embeddings': c.tied_embedding, 'scale_attn_weights': True,
      'scale_attn_by_inverse_layer_idx': False, 'reorder_and_upcast_attn': False,
      'resid_pdrop': c.dropout_rate, 'embd_pdrop': c.dropout_rate, 'attn_pdrop': 0.0,
      'initializer_range': c.init_std, 'bos_token_id': None, 'eos_token_id': None,
      'dtype': 'float32'}


def rules(c: ml_collections.ConfigDict) -> list[Rule]:
  """Every GPT-2 tensor and the params of ours it holds."""
  v, d, n, _, h, f = common.dims(c)
  table = [same('transformer.wte.weight', 'embed', (v, d)),
           same('transformer.wpe.weight', 'pos_embed/embedding', (c.max_seq_len, d))]
  for i in range(c.num_layers):
    hf, ours = f'transformer.h.{i}.', f'layers_{i}/'
    for hf_norm, our_norm in (('ln_1', 'attn_norm'), ('ln_2', 'mlp_norm')):
      table += [same(f'{hf}{hf_norm}.weight', f'{ours}{our_norm}/scale', (d,)),
                same(f'{hf}{hf_norm}.bias', f'{ours}{our_norm}/bias', (d,))]
    qkv = [f'{ours}attn/{name}' for name in ('query', 'key', 'value')]
    table += [
        fused(f'{hf}attn.c_attn.weight', (d, 3 * d), qkv, (d, n, h), axis=1),
        fused(f'{hf}attn.c_attn.bias', (3 * d,), [f'{q}_bias' for q in qkv], (n, h), axis=0),
        reshaped(f'{hf}attn.c_proj.weight', (d, d), f'{ours}attn/out', (n, h, d)),
        same(f'{hf}attn.c_proj.bias', f'{ours}attn/out_bias', (d,)),
        same(f'{hf}mlp.c_fc.weight', f'{ours}mlp/wi', (d, f)),
        same(f'{hf}mlp.c_fc.bias', f'{ours}mlp/wi_bias', (f,)),
        same(f'{hf}mlp.c_proj.weight', f'{ours}mlp/wo', (f, d)),
        same(f'{hf}mlp.c_proj.bias', f'{ours}mlp/wo_bias', (d,))]
  table += [same('transformer.ln_f.weight', 'final_norm/scale', (d,)),
            same('transformer.ln_f.bias', 'final_norm/bias', (d,))]
  return table + common.unembedding_rules(c)
