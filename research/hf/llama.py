"""Llama and Mistral (`LlamaForCausalLM`, `MistralForCausalLM`): RoPE, pre-RMSNorm, SwiGLU.

nn.Linear stores weights [out, in], ours [in, ...]. Our RoPE uses the same half-split
(rotate_half) channel pairing as Hugging Face Llama, so q/k weights map without a permutation.
Mistral is Llama with a sliding window.
"""

from __future__ import annotations

import ml_collections

from research.hf import common
from research.hf.tables import Rule, reshaped, same, transposed

MODEL_TYPES = ('llama', 'mistral')
IGNORED = (r'model\.(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq',)


def normalise_names(arrays: dict) -> dict:
  return arrays


def _rope_base(hf: dict, where: str) -> float:
  """RoPE theta from `rope_parameters` (transformers 5) or `rope_theta` (4); plain RoPE only."""
  scaling = hf.get('rope_scaling')
  if scaling:
    kind = scaling.get('rope_type', scaling.get('type'))
    if kind != 'default':
      common.unsupported(where, 'rope_scaling', scaling, 'only unscaled RoPE is implemented')
  rope = hf.get('rope_parameters') or {}
  kind = rope.get('rope_type', rope.get('type', 'default'))
  if kind != 'default':
    common.unsupported(where, 'rope_parameters.rope_type', kind, 'only unscaled ("default") RoPE '
                       'is implemented')
  partial = rope.get('partial_rotary_factor', hf.get('partial_rotary_factor', 1.0))
  if partial != 1.0:
    common.unsupported(where, 'partial_rotary_factor', partial, 'RoPE is applied to whole heads')
  return float(rope.get('rope_theta', common.field(hf, where, 'rope_theta', 10000.0)))


def config_from_hf(hf: dict, where: str) -> ml_collections.ConfigDict:
  """Our model config from a Llama/Mistral config.json; optional biases, Mistral's window."""
  activation = common.field(hf, where, 'hidden_act', 'silu')
  if activation != 'silu':
    common.unsupported(where, 'hidden_act', activation, 'our SwiGLU gates with silu')
  attention_bias = bool(common.field(hf, where, 'attention_bias', False))
  mlp_bias = bool(common.field(hf, where, 'mlp_bias', False))
  if attention_bias != mlp_bias:
    common.unsupported(where, 'mlp_bias', mlp_bias, f'attention_bias={attention_bias} differs, '
                       'and model.use_bias covers both attention and MLP')
  layer_types = hf.get('layer_types')
  if layer_types and len(set(layer_types)) > 1:
    common.unsupported(where, 'layer_types', sorted(set(layer_types)),
                       'every layer must attend alike')
  c = common.base_config(hf, where)
  c.vocab_size = common.field(hf, where, 'vocab_size')
  c.d_model = common.field(hf, where, 'hidden_size')
  c.num_layers = common.field(hf, where, 'num_hidden_layers')
  c.num_heads = common.field(hf, where, 'num_attention_heads')
  c.num_kv_heads = common.field(hf, where, 'num_key_value_heads', c.num_heads)
  h = common.field(hf, where, 'head_dim', 0)
  c.head_dim = 0 if h * c.num_heads == c.d_model else h
  c.d_ff = common.field(hf, where, 'intermediate_size')
  c.max_seq_len = common.field(hf, where, 'max_position_embeddings')
  c.position = 'rope'
  c.rope_base = _rope_base(hf, where)
  c.norm = 'rmsnorm'
  c.norm_eps = float(common.field(hf, where, 'rms_norm_eps', 1e-6))
  c.norm_position = 'pre'
  c.final_norm = True
  c.mlp = 'swiglu'
  c.tied_embedding = bool(common.field(hf, where, 'tie_word_embeddings', False))
  c.use_bias = attention_bias
  # Mistral (and Mixtral) mask key j for query i unless 0 <= i - j < sliding_window: as ours.
  c.sliding_window = (common.field(hf, where, 'sliding_window', 0)
                      if hf['model_type'] != 'llama' else 0)
  return c


def exportable(c: ml_collections.ConfigDict) -> dict:
  """The fields a config needs to be a Llama (or, with a sliding window, a Mistral)."""
  want = {'norm': 'rmsnorm', 'mlp': 'swiglu'}
  if c.sliding_window:
    want['use_bias'] = False
  return want


def export_type(c: ml_collections.ConfigDict) -> str:
  return 'mistral' if c.sliding_window else 'llama'


def config_to_hf(c: ml_collections.ConfigDict, model_type: str) -> dict:
  """A Llama/Mistral config.json for our model config."""
  v, d, n, k, h, f = common.dims(c)
  config = {
      'architectures': ['MistralForCausalLM' if model_type == 'mistral' else 'LlamaForCausalLM'],
      'model_type': model_type, 'vocab_size': v, 'hidden_size': d, 'intermediate_size': f,
      'num_hidden_layers': c.num_layers, 'num_attention_heads': n, 'num_key_value_heads': k,
      'head_dim': h, 'max_position_embeddings': c.max_seq_len, 'rms_norm_eps': c.norm_eps,
      # transformers 5 reads rope_parameters, 4 reads rope_theta.
      'rope_parameters': {'rope_type': 'default', 'rope_theta': c.rope_base},
      'rope_theta': c.rope_base, 'hidden_act': 'silu', 'tie_word_embeddings': c.tied_embedding,
      'attention_dropout': 0.0, 'initializer_range': c.init_std, 'bos_token_id': None,
      'eos_token_id': None, 'dtype': 'float32'}
  if model_type == 'mistral':
    config['sliding_window'] = c.sliding_window
  else:
    config.update(attention_bias=c.use_bias, mlp_bias=c.use_bias)
  return config


def attention_rules(c: ml_collections.ConfigDict, i: int) -> list[Rule]:
  """Layer i's norms and attention, shared by Llama, Mistral and Mixtral."""
  _, d, n, k, h, _ = common.dims(c)
  hf, ours = f'model.layers.{i}.', f'layers_{i}/'
  table = [same(f'{hf}input_layernorm.weight', f'{ours}attn_norm/scale', (d,)),
           same(f'{hf}post_attention_layernorm.weight', f'{ours}mlp_norm/scale', (d,))]
  for proj, name, heads in (('q_proj', 'query', n), ('k_proj', 'key', k), ('v_proj', 'value', k)):
    table.append(transposed(f'{hf}self_attn.{proj}.weight', f'{ours}attn/{name}', (d, heads, h)))
    if c.use_bias:
      table.append(reshaped(f'{hf}self_attn.{proj}.bias', (heads * h,),
                            f'{ours}attn/{name}_bias', (heads, h)))
  table.append(transposed(f'{hf}self_attn.o_proj.weight', f'{ours}attn/out', (n, h, d),
                          heads_first=True))
  if c.use_bias:
    table.append(same(f'{hf}self_attn.o_proj.bias', f'{ours}attn/out_bias', (d,)))
  return table


def rules(c: ml_collections.ConfigDict, feed_forward=None) -> list[Rule]:
  """Every Llama/Mistral tensor and the param of ours it holds; `feed_forward(c, i)` replaces
  the MLP's rules (Mixtral's experts)."""
  v, d, _, _, _, f = common.dims(c)
  table = [same('model.embed_tokens.weight', 'embed', (v, d))]
  for i in range(c.num_layers):
    table += attention_rules(c, i)
    if feed_forward is not None:
      table += feed_forward(c, i)
      continue
    hf, ours = f'model.layers.{i}.', f'layers_{i}/'
    for proj, name, shape in (('gate_proj', 'wi_gate', (d, f)), ('up_proj', 'wi_up', (d, f)),
                              ('down_proj', 'wo', (f, d))):
      table.append(transposed(f'{hf}mlp.{proj}.weight', f'{ours}mlp/{name}', shape))
      if c.use_bias:
        table.append(same(f'{hf}mlp.{proj}.bias', f'{ours}mlp/{name}_bias', shape[1:]))
  table.append(same('model.norm.weight', 'final_norm/scale', (d,)))
  return table + common.unembedding_rules(c)
