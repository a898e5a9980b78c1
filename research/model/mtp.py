"""Multi-token prediction heads (Gloeckle et al. 2024): head k predicts the token k + 1 ahead.

The trunk (every decoder layer) is shared; each of the `model.mtp_heads` heads is its own
position-wise residual feed-forward block, h + MLP_k(norm(h)), with its own final norm, read out
through the shared output matrix. The paper's heads are full transformer layers; position-wise
heads (as Medusa's) need no cache of their own, so self-speculative decoding drafts with them
from the hidden state the verifying pass already computed.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from research.model import mup
from research.model.config import resolve_dtype
from research.model.mlp import MLP
from research.model.norms import Norm


class MTPHeads(nn.Module):
  """The trunk's last hidden states [B, T, D] -> one normed [B, T, D] per head (t+2, t+3, ...)."""
  config: ml_collections.ConfigDict

  @nn.compact
  def __call__(self, trunk_BxTxD):
    c = self.config
    dtype, param_dtype = resolve_dtype(c.dtype), jnp.dtype(c.param_dtype)
    std = mup.hidden_init_std(c, c.init_std)  # as the decoder layers' (research/model/block.py)
    out_std = std / math.sqrt(2 * c.num_layers)
    heads = []
    for k in range(c.mtp_heads):
      mlp = MLP(kind=c.mlp, d_ff=c.d_ff, use_bias=c.use_bias, gelu_approximate=c.gelu_approximate,
                init_std=std, out_init_std=out_std, dtype=dtype, param_dtype=param_dtype,
                name=f'head_{k}_mlp')
      h_BxTxD = trunk_BxTxD + mlp(Norm(c.norm, c.norm_eps, dtype, param_dtype,
                                       name=f'head_{k}_norm')(trunk_BxTxD))
      heads.append(Norm(c.norm, c.norm_eps, dtype, param_dtype,
                        name=f'head_{k}_final_norm')(h_BxTxD))
    return tuple(heads)
