"""Mixtral (`MixtralForCausalLM`): Mistral's attention with a Mixture-of-Experts feed-forward.

Every layer is MoE: a router `block_sparse_moe.gate` [E, D], softmax over all experts, top-k
renormalised, experts `block_sparse_moe.experts.{e}.w1/w3/w2` (SwiGLU gate, up, down; nn.Linear
[out, in] each), no shared experts, nothing dropped. That is our MoE with router_renormalize=True,
expert_capacity_factor=0, moe_every=1. The checkpoint layout is the one on the Hub, which
transformers 5 also writes (its fused in-memory `gate_up_proj` is converted on save and load).
"""

from __future__ import annotations

import ml_collections

from research.hf import common
from research.hf import llama
from research.hf.tables import Rule, stacked, transposed

MODEL_TYPES = ('mixtral',)
IGNORED = llama.IGNORED
normalise_names = llama.normalise_names


def config_from_hf(hf: dict, where: str) -> ml_collections.ConfigDict:
  """Our model config from a Mixtral config.json."""
  for name in ('attention_bias', 'mlp_bias'):
    if hf.get(name):
      common.unsupported(where, name, hf[name], 'Mixtral has no biases')
  jitter = common.field(hf, where, 'router_jitter_noise', 0.0)
  if jitter:
    common.unsupported(where, 'router_jitter_noise', jitter, 'our router has no input jitter')
  c = llama.config_from_hf(hf, where)
  c.num_experts = common.field(hf, where, 'num_local_experts')
  c.experts_per_token = common.field(hf, where, 'num_experts_per_tok')
  c.moe_d_ff = 0  # each expert is intermediate_size wide
  c.num_shared_experts = 0
  c.moe_every = 1
  c.expert_capacity_factor = 0.0
  c.router_renormalize = True
  return c


def exportable(c: ml_collections.ConfigDict) -> dict:
  """The fields a config needs to be a Mixtral (the caller names any that differ)."""
  return {'norm': 'rmsnorm', 'mlp': 'swiglu', 'use_bias': False, 'position': 'rope',
          'moe_d_ff': c.moe_d_ff if c.moe_d_ff in (0, c.d_ff) else 0, 'num_shared_experts': 0,
          'moe_every': 1, 'expert_capacity_factor': 0.0, 'router_renormalize': True}


def export_type(c: ml_collections.ConfigDict) -> str:
  return 'mixtral'


def config_to_hf(c: ml_collections.ConfigDict, model_type: str) -> dict:
  """A Mixtral config.json for our model config."""
  config = llama.config_to_hf(c, 'mistral')
  config.update(architectures=['MixtralForCausalLM'], model_type=model_type,
                sliding_window=c.sliding_window or None, num_local_experts=c.num_experts,
                num_experts_per_tok=c.experts_per_token, router_jitter_noise=0.0,
                output_router_logits=False)
  return config


def expert_rules(c: ml_collections.ConfigDict, i: int) -> list[Rule]:
  """Layer i's router and experts."""
  _, d, _, _, _, f = common.dims(c)
  e = c.num_experts
  hf, ours = f'model.layers.{i}.block_sparse_moe.', f'layers_{i}/mlp/'
  experts = lambda w: [f'{hf}experts.{j}.{w}.weight' for j in range(e)]
  return [transposed(f'{hf}gate.weight', f'{ours}router', (d, e)),
          stacked(experts('w1'), f'{ours}wi_gate', (e, d, f)),
          stacked(experts('w3'), f'{ours}wi_up', (e, d, f)),
          stacked(experts('w2'), f'{ours}wo', (e, f, d))]


def rules(c: ml_collections.ConfigDict) -> list[Rule]:
  """Every Mixtral tensor and the param of ours it holds."""
  return llama.rules(c, feed_forward=expert_rules)
