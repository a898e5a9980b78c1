"""Parameter and FLOP accounting under the conventions scaling-law papers use.

Embedding parameters are the token embedding, the learned position table and, when untied, the
output (unembedding) matrix; everything else is non-embedding (Kaplan et al. 2020's N).

FLOP conventions (all per token, all counting a multiply-add as 2 FLOPs, causal masking ignored as
in the papers):
- Kaplan et al. (2020), section 2.1: forward C_fwd = 2N + 2 n_layer n_ctx d_attn with N the
  non-embedding count; training is quoted as 6N (the context term dropped).
- Hoffmann et al. (2022, Chinchilla) appendix F: embeddings, Q/K/V projections, QK logits, softmax,
  attention over values, output projection, feed-forward and final logits, backward = 2x forward.
  Generalised here to grouped-query attention (K/V projections of num_kv_heads) and SwiGLU (three
  feed-forward matrices).
- Chowdhery et al. (2022, PaLM) appendix B, the MFU convention: 6 x (weights used in matmuls, the
  output matrix counted once and embedding gathers not at all) + 12 x n_layer x d_attn x n_ctx,
  where d_attn = num_heads x head_dim (= d_model in the usual case).

Mixture of Experts: a token uses the router, its k routed experts and the shared experts of an
MoE layer, so the FLOP conventions count those (the router as the matmul it is) and
`predict_param_counts(c, active=True)` counts the parameters a token uses; `active=False` (the
default) counts all of them. For dense models the two agree. Capacity padding is not counted:
model FLOPs are the useful ones.

Mamba layers (model.block_pattern) have no context term: their projections are matmul weights
like any other, and the Chinchilla count adds the convolution and the selective scan (9 F X per
token, the Mamba paper's count); they have no feed-forward. Multi-token prediction heads
(model.mtp_heads) count as non-embedding parameters, and each adds its MLP and a readout through
the output matrix to the FLOPs.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from research.model.config import (expert_d_ff, head_dim, is_moe_layer, layer_mixer, moe_field,
                                   mtp_field, num_attention_layers)
from research.model.mamba import dt_rank


@dataclasses.dataclass(frozen=True)
class ParamCounts:
  total: int
  embedding: int
  non_embedding: int


def _ffn_weights(c, width: int, copies: int) -> tuple[int, int]:
  """(matmul weights, biases) of `copies` feed-forward networks of hidden width `width`."""
  d = c.d_model
  matmul = (3 if c.mlp == 'swiglu' else 2) * d * width
  biases = ((2 if c.mlp == 'swiglu' else 1) * width + d) if c.use_bias else 0
  return copies * matmul, copies * biases


def _feed_forward_weights(c, layer: int, active: bool) -> tuple[int, int]:
  """(matmul weights, biases) of layer `layer`'s feed-forward; `active`: of an MoE layer, only
  what one token uses (the router, k routed experts and the shared experts)."""
  if not is_moe_layer(c, layer):
    return _ffn_weights(c, c.d_ff, 1)
  experts, f = moe_field(c, 'num_experts'), expert_d_ff(c)
  matmul, biases = _ffn_weights(c, f, moe_field(c, 'experts_per_token') if active else experts)
  shared = moe_field(c, 'num_shared_experts')
  shared_matmul, shared_biases = _ffn_weights(c, shared * f, 1) if shared else (0, 0)
  router = c.d_model * experts
  return router + matmul + shared_matmul, biases + shared_biases


def _mamba_sizes(c) -> tuple[int, int, int, int]:
  """(inner width F, states X, convolution taps Z, step rank R) of a Mamba layer."""
  return (c.mamba_expand * c.d_model, c.mamba_d_state, c.mamba_d_conv,
          dt_rank(c.d_model, c.mamba_dt_rank))


def _mamba_weights(c) -> tuple[int, int]:
  """(matmul weights, other params) of a Mamba layer: in_proj, x_proj, dt_proj and out_proj
  are matmuls; the depthwise convolution, A_log, D, the biases and the norm are the others."""
  d, (f, x, z, r) = c.d_model, _mamba_sizes(c)
  matmul = d * 2 * f + f * (r + 2 * x) + r * f + f * d
  others = z * f + f + f + f * x + f + (2 * f + d if c.use_bias else 0)
  return matmul, others + d * (2 if c.norm == 'layernorm' else 1)


def _mamba_flops(c) -> int:
  """Forward FLOPs per token of a Mamba layer beyond its matmuls: the convolution (2 Z F) and
  the selective scan, 9 F X as counted in the Mamba paper (discretise, update, read out)."""
  f, x, z, _ = _mamba_sizes(c)
  return 2 * z * f + 9 * f * x


def _mtp_weights(c) -> tuple[int, int]:
  """(matmul weights, other params) of the multi-token prediction heads: each a dense MLP and
  two norms (their readout is the shared output matrix, counted per head in the FLOPs)."""
  heads = mtp_field(c, 'mtp_heads')
  matmul, biases = _ffn_weights(c, c.d_ff, heads)
  return matmul, biases + heads * 2 * c.d_model * (2 if c.norm == 'layernorm' else 1)


def _layer_weights(c, layer: int = 0, active: bool = False) -> tuple[int, int]:
  """(matmul weights, other params: biases and norms) of decoder layer `layer`."""
  if layer_mixer(c, layer) == 'mamba':
    return _mamba_weights(c)
  d, n, k, h = c.d_model, c.num_heads, c.num_kv_heads, head_dim(c)
  attn = d * n * h + 2 * d * k * h + n * h * d
  attn_biases = (n * h + 2 * k * h + d) if c.use_bias else 0
  mlp, mlp_biases = _feed_forward_weights(c, layer, active)
  norms = 2 * d * (2 if c.norm == 'layernorm' else 1)
  return attn + mlp, attn_biases + mlp_biases + norms


def predict_param_counts(c, active: bool = False) -> ParamCounts:
  """Exact parameter counts from the config alone, without building the model; `active`: the
  parameters one token uses (differs from all of them only for Mixture-of-Experts layers)."""
  non_embedding = sum(sum(_layer_weights(c, i, active)) for i in range(c.num_layers))
  non_embedding += sum(_mtp_weights(c))
  if c.final_norm:
    non_embedding += c.d_model * (2 if c.norm == 'layernorm' else 1)
  embedding = c.vocab_size * c.d_model
  if c.position == 'learned':
    embedding += c.max_seq_len * c.d_model
  if not c.tied_embedding:
    embedding += c.d_model * c.vocab_size
  return ParamCounts(embedding + non_embedding, embedding, non_embedding)


EMBEDDING_PARAMS = ('embed', 'pos_embed', 'unembed')


def count_params(params) -> ParamCounts:
  """Counts read from a param tree (boxed or not, scanned or not)."""
  params = nn.unbox(params)
  sizes = {k: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(v)) for k, v in params.items()}
  embedding = sum(v for k, v in sizes.items() if k in EMBEDDING_PARAMS)
  total = sum(sizes.values())
  return ParamCounts(total, embedding, total - embedding)


def matmul_weights(c: ml_collections.ConfigDict) -> int:
  """Weights used in matrix multiplies per token: the layers' projections (of an MoE layer the
  router and the experts a token uses) plus the output matrix."""
  return (sum(_layer_weights(c, i, active=True)[0] for i in range(c.num_layers)) +
          _mtp_weights(c)[0] + (1 + mtp_field(c, 'mtp_heads')) * c.d_model * c.vocab_size)


def kaplan_flops_per_token(c: ml_collections.ConfigDict, n_ctx: int | None = None) -> dict:
  """Kaplan et al. (2020): forward 2N + 2 n_layer n_ctx d_attn; training 6N (N non-embedding,
  the active ones of an MoE model)."""
  n_ctx = n_ctx or c.max_seq_len
  n = predict_param_counts(c, active=True).non_embedding
  forward = 2 * n + 2 * num_attention_layers(c) * n_ctx * c.num_heads * head_dim(c)
  return {'forward': forward, 'train': 6 * n, 'train_with_context': 3 * forward}


def chinchilla_flops_per_token(c: ml_collections.ConfigDict, n_ctx: int | None = None) -> dict:
  """Hoffmann et al. (2022) appendix F, per token of a sequence of n_ctx; backward = 2x forward.

  An MoE layer's feed-forward is its router, k routed experts and shared experts.
  """
  t = n_ctx or c.max_seq_len
  d, n, k, h, v = c.d_model, c.num_heads, c.num_kv_heads, head_dim(c), c.vocab_size
  embeddings = 2 * d * v
  qkv = 2 * d * h * (n + 2 * k)
  logits_qk = 2 * t * n * h
  softmax = 3 * n * t
  attend_values = 2 * t * n * h
  out_proj = 2 * n * h * d
  final_logits = 2 * d * v
  attention = qkv + logits_qk + softmax + attend_values + out_proj
  attention_layers = [i for i in range(c.num_layers) if layer_mixer(c, i) == 'attention']
  feed_forward = sum(2 * _feed_forward_weights(c, i, active=True)[0] for i in attention_layers)
  mamba_layers = c.num_layers - len(attention_layers)
  mamba = mamba_layers * (2 * _mamba_weights(c)[0] + _mamba_flops(c)) if mamba_layers else 0
  mtp = 2 * _mtp_weights(c)[0] + mtp_field(c, 'mtp_heads') * final_logits
  forward = (embeddings + len(attention_layers) * attention + feed_forward + mamba +
             final_logits + mtp)
  return {'forward': forward, 'train': 3 * forward}


def palm_flops_per_token(c: ml_collections.ConfigDict, n_ctx: int | None = None) -> int:
  """PaLM appendix B training FLOPs per token, the numerator of MFU: 6 W + 12 L d_attn T."""
  t = n_ctx or c.max_seq_len
  return 6 * matmul_weights(c) + 12 * num_attention_layers(c) * c.num_heads * head_dim(c) * t


def flops_report(c: ml_collections.ConfigDict, n_ctx: int | None = None) -> dict:
  """Every convention's training FLOPs per token in one flat dict (for logs and summaries)."""
  kaplan = kaplan_flops_per_token(c, n_ctx)
  return {
      'kaplan_6n': kaplan['train'],
      'kaplan_with_context': kaplan['train_with_context'],
      'chinchilla': chinchilla_flops_per_token(c, n_ctx)['train'],
      'palm': palm_flops_per_token(c, n_ctx),
  }
