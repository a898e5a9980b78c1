"""Mamba (`MambaForCausalLM`): pre-RMSNorm Mamba mixers, no positions, no feed-forward.

Each layer is `x + mixer(norm(x))`: our `block_pattern='M'` with `position='none'`. nn.Linear
stores weights [out, in], ours [in, out]; the depthwise `conv1d.weight` [F, 1, Z] is our
`conv_kernel` [Z, F] (torch's Conv1d is a cross-correlation, so tap j meets x_{t-Z+1+j} in both).
"""

from __future__ import annotations

import math

import ml_collections
import numpy as np

from research.hf import common
from research.hf.tables import Rule, same, transposed
from research.model.mamba import dt_rank

MODEL_TYPES = ('mamba',)
IGNORED = ()
MAX_SEQ_LEN = 2048  # Mamba has no context limit; this only bounds our generation and caches


def normalise_names(arrays: dict) -> dict:
  return arrays


def config_from_hf(hf: dict, where: str) -> ml_collections.ConfigDict:
  """Our model config from a Mamba config.json."""
  activation = common.field(hf, where, 'hidden_act', 'silu')
  if activation != 'silu':
    common.unsupported(where, 'hidden_act', activation, 'our Mamba mixer uses silu')
  if not common.field(hf, where, 'use_conv_bias', True):
    common.unsupported(where, 'use_conv_bias', False, 'our convolution always has a bias')
  c = common.base_config(hf, where)
  c.vocab_size = common.field(hf, where, 'vocab_size')
  c.d_model = common.field(hf, where, 'hidden_size')
  c.num_layers = common.field(hf, where, 'num_hidden_layers')
  c.num_heads = c.num_kv_heads = 1  # no attention layer: unused, but valid
  c.head_dim = 0
  c.d_ff = 4 * c.d_model  # unused: Mamba layers have no feed-forward
  c.max_seq_len = MAX_SEQ_LEN
  c.position = 'none'
  c.norm = 'rmsnorm'
  c.norm_eps = float(common.field(hf, where, 'layer_norm_epsilon', 1e-5))
  c.norm_position = 'pre'
  c.final_norm = True
  c.tied_embedding = bool(common.field(hf, where, 'tie_word_embeddings', True))
  c.use_bias = bool(common.field(hf, where, 'use_bias', False))
  c.block_pattern = 'M'
  c.mamba_d_state = common.field(hf, where, 'state_size', 16)
  c.mamba_d_conv = common.field(hf, where, 'conv_kernel', 4)
  c.mamba_expand = common.field(hf, where, 'expand', 2)
  rank = common.field(hf, where, 'time_step_rank', 'auto')
  c.mamba_dt_rank = math.ceil(c.d_model / 16) if rank == 'auto' else int(rank)
  inner = common.field(hf, where, 'intermediate_size', c.mamba_expand * c.d_model)
  if inner != c.mamba_expand * c.d_model:
    common.unsupported(where, 'intermediate_size', inner, f'must be expand * hidden_size = '
                       f'{c.mamba_expand * c.d_model}')
  return c


def exportable(c: ml_collections.ConfigDict) -> dict:
  """The fields a config needs to be a Mamba (the caller names any that differ)."""
  return {'block_pattern': 'M', 'norm': 'rmsnorm', 'position': 'none'}


def config_to_hf(c: ml_collections.ConfigDict, model_type: str) -> dict:
  """A Mamba config.json for our model config."""
  return {
      'architectures': ['MambaForCausalLM'], 'model_type': model_type,
      'vocab_size': c.vocab_size, 'hidden_size': c.d_model, 'num_hidden_layers': c.num_layers,
      'state_size': c.mamba_d_state, 'conv_kernel': c.mamba_d_conv, 'expand': c.mamba_expand,
      'intermediate_size': c.mamba_expand * c.d_model,
      'time_step_rank': dt_rank(c.d_model, c.mamba_dt_rank), 'layer_norm_epsilon': c.norm_eps,
      'use_bias': c.use_bias, 'use_conv_bias': True, 'hidden_act': 'silu',
      'residual_in_fp32': True, 'tie_word_embeddings': c.tied_embedding,
      'initializer_range': c.init_std, 'pad_token_id': None, 'bos_token_id': None,
      'eos_token_id': None, 'dtype': 'float32'}


def _conv(hf: str, ours: str, f: int, z: int) -> Rule:
  """conv1d.weight [F, 1, Z] <-> our conv_kernel [Z, F]."""
  return Rule((hf,), ((f, 1, z),), (ours,), ((z, f),), lambda x: (np.ascontiguousarray(x[:, 0].T),),
              lambda x: (np.ascontiguousarray(x.T[:, None, :]),))


def rules(c: ml_collections.ConfigDict) -> list[Rule]:
  """Every Mamba tensor and the param of ours it holds."""
  v, d = c.vocab_size, c.d_model
  f, x, z = c.mamba_expand * d, c.mamba_d_state, c.mamba_d_conv
  r = dt_rank(d, c.mamba_dt_rank)
  table = [same('backbone.embeddings.weight', 'embed', (v, d))]
  for i in range(c.num_layers):
    hf, ours = f'backbone.layers.{i}.', f'layers_{i}/'
    mixer, mamba = f'{hf}mixer.', f'{ours}mamba/'
    table += [
        same(f'{hf}norm.weight', f'{ours}mamba_norm/scale', (d,)),
        transposed(f'{mixer}in_proj.weight', f'{mamba}in_proj', (d, 2 * f)),
        _conv(f'{mixer}conv1d.weight', f'{mamba}conv_kernel', f, z),
        same(f'{mixer}conv1d.bias', f'{mamba}conv_bias', (f,)),
        transposed(f'{mixer}x_proj.weight', f'{mamba}x_proj', (f, r + 2 * x)),
        transposed(f'{mixer}dt_proj.weight', f'{mamba}dt_proj', (r, f)),
        same(f'{mixer}dt_proj.bias', f'{mamba}dt_bias', (f,)),
        same(f'{mixer}A_log', f'{mamba}A_log', (f, x)),
        same(f'{mixer}D', f'{mamba}D', (f,)),
        transposed(f'{mixer}out_proj.weight', f'{mamba}out_proj', (f, d))]
    if c.use_bias:
      table += [same(f'{mixer}in_proj.bias', f'{mamba}in_proj_bias', (2 * f,)),
                same(f'{mixer}out_proj.bias', f'{mamba}out_proj_bias', (d,))]
  table.append(same('backbone.norm_f.weight', 'final_norm/scale', (d,)))
  return table + common.unembedding_rules(c)
