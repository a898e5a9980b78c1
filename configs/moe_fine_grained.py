"""A fine-grained MoE model with a shared expert (DeepSeekMoE-style) on llama_small's shape:
32 experts a quarter of d_ff wide per layer, top-3 routing plus one always-on shared expert of
the same width, so a token's feed-forward costs as much as llama_small's dense one: 535M
parameters, 125M active per token (llama_small: 125M)."""

import pathlib

from research.config import load_config_file


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name('llama_small.py'))
  m = c.model
  m.num_experts = 32
  m.experts_per_token = 3
  m.num_shared_experts = 1
  m.moe_d_ff = m.d_ff // 4
  m.router_renormalize = False  # DeepSeekMoE keeps the softmax weights of the chosen experts
  m.scan_layers = True
  return c
