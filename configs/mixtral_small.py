"""A small Mixtral-style MoE model: llama_small's shape with 8 SwiGLU experts per layer, top-2,
dropless, the top-2 probabilities renormalised: 521M parameters, 181M active per token."""

import pathlib

from research.config import load_config_file


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name('llama_small.py'))
  m = c.model
  m.num_experts = 8
  m.experts_per_token = 2
  m.moe_d_ff = 0  # each expert as wide as d_ff
  m.router_renormalize = True
  m.rope_base = 1e6
  m.scan_layers = True
  return c
