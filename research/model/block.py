"""One decoder layer: attention and feed-forward sub-layers on the residual stream."""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from research.model import mup
from research.model.attention import Attention
from research.model.mamba import Mamba
from research.model.config import head_dim, is_moe_layer, resolve_dtype
from research.model.mlp import MLP
from research.model.moe import MoE
from research.model.norms import Norm


class Block(nn.Module):
  """Pre-norm: x + f(norm(x)); post-norm (original Transformer): norm(x + f(x)).

  Called as `(x, positions[, in_prefix]) -> (x, None)` so the same module can be scanned over
  layers; `in_prefix_BxT` gives attention a prefix-LM mask (see attention.prefix_mask).
  `decode=True` makes attention use and extend its key/value cache; `moe=True` makes the
  feed-forward a Mixture of Experts. `mixer='mamba'` makes the layer one Mamba sub-layer
  (research/model/mamba.py) with no feed-forward, as in the Mamba paper and transformers.
  """
  config: ml_collections.ConfigDict
  deterministic: bool = True
  decode: bool = False
  moe: bool = False
  mixer: str = 'attention'  # attention | mamba
  ring_cache: bool = False  # decode: a sliding window's cache is a ring (attention.py)

  @nn.compact
  def __call__(self, x_BxTxD, positions_BxT, in_prefix_BxT=None):
    c = self.config
    dtype, param_dtype = resolve_dtype(c.dtype), jnp.dtype(c.param_dtype)
    # GPT-2 scales the init of projections that write into the residual stream by 1/sqrt(2L);
    # muP scales every hidden matrix's by 1/sqrt(width multiplier).
    std = mup.hidden_init_std(c, c.init_std)
    out_std = std / math.sqrt(2 * c.num_layers)
    norm = lambda name: Norm(c.norm, c.norm_eps, dtype, param_dtype, name=name)
    dropout = nn.Dropout(c.dropout_rate, deterministic=self.deterministic)
    x_BxTxD = nn.with_logical_constraint(x_BxTxD, ('batch', 'length', 'embed'))
    if self.mixer == 'mamba':
      mamba = Mamba(d_state=c.mamba_d_state, d_conv=c.mamba_d_conv, expand=c.mamba_expand,
                    dt_rank=c.mamba_dt_rank, use_bias=c.use_bias, init_std=std,
                    out_init_std=out_std, dtype=dtype, param_dtype=param_dtype,
                    decode=self.decode, name='mamba')
      if c.norm_position == 'pre':
        x_BxTxD = x_BxTxD + dropout(mamba(norm('mamba_norm')(x_BxTxD), positions_BxT))
      else:
        x_BxTxD = norm('mamba_norm')(x_BxTxD + dropout(mamba(x_BxTxD, positions_BxT)))
      return nn.with_logical_constraint(x_BxTxD, ('batch', 'length', 'embed')), None
    attention = Attention(
        num_heads=c.num_heads, num_kv_heads=c.num_kv_heads, head_dim=head_dim(c),
        use_bias=c.use_bias, position=c.position, rope_base=c.rope_base,
        sliding_window=c.sliding_window, impl=c.attention_impl, init_std=std,
        out_init_std=out_std, dtype=dtype, param_dtype=param_dtype, decode=self.decode,
        ring_cache=self.ring_cache,
        query_multiplier=mup.attention_query_multiplier(c, head_dim(c)), name='attn')
    if self.moe:
      mlp = MoE(c, init_std=std, out_init_std=out_std, dtype=dtype, param_dtype=param_dtype,
                name='mlp')
    else:
      mlp = MLP(kind=c.mlp, d_ff=c.d_ff, use_bias=c.use_bias,
                gelu_approximate=c.gelu_approximate, init_std=std, out_init_std=out_std,
                dtype=dtype, param_dtype=param_dtype, name='mlp')
    if c.norm_position == 'pre':
      x_BxTxD = x_BxTxD + dropout(attention(norm('attn_norm')(x_BxTxD), positions_BxT,
                                            in_prefix_BxT))
      x_BxTxD = x_BxTxD + dropout(mlp(norm('mlp_norm')(x_BxTxD)))
    else:
      x_BxTxD = norm('attn_norm')(x_BxTxD + dropout(attention(x_BxTxD, positions_BxT,
                                                              in_prefix_BxT)))
      x_BxTxD = norm('mlp_norm')(x_BxTxD + dropout(mlp(x_BxTxD)))
    x_BxTxD = nn.with_logical_constraint(x_BxTxD, ('batch', 'length', 'embed'))
    return x_BxTxD, None


class BlockGroup(nn.Module):
  """`moe_every` consecutive layers, the last one MoE: the unit scanned when they alternate."""
  config: ml_collections.ConfigDict
  deterministic: bool = True
  decode: bool = False
  ring_cache: bool = False

  @nn.compact
  def __call__(self, x_BxTxD, positions_BxT, in_prefix_BxT=None):
    c = self.config
    for j in range(c.moe_every):
      x_BxTxD, _ = Block(c, self.deterministic, self.decode, is_moe_layer(c, j),
                         ring_cache=self.ring_cache, name=f'block_{j}')(x_BxTxD, positions_BxT,
                                                                        in_prefix_BxT)
    return x_BxTxD, None
