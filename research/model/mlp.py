"""Position-wise feed-forward: GELU MLP (GPT-2) or SwiGLU (Shazeer 2020; Llama)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.model import weights


class MLP(nn.Module):
  """`kind='gelu'`: wo(gelu(wi x)); `kind='swiglu'`: wo(silu(wi_gate x) * wi_up x)."""
  kind: str
  d_ff: int
  use_bias: bool
  gelu_approximate: bool
  init_std: float
  out_init_std: float
  dtype: jnp.dtype
  param_dtype: jnp.dtype

  def _dense(self, name, x, d_in, d_out, axes, std):
    w = weights.matrix(self, name, nn.initializers.normal(std), (d_in, d_out), axes,
                       self.param_dtype)  # decoding may pass it quantised (weights.py)
    y = weights.contract('btd,df->btf', x, w, self.dtype)
    if self.use_bias:
      b = self.param(name + '_bias', nn.with_logical_partitioning(nn.initializers.zeros, axes[1:]),
                     (d_out,), self.param_dtype)
      y += b.astype(self.dtype)
    return y

  @nn.compact
  def __call__(self, x_BxTxD):
    d, f = x_BxTxD.shape[-1], self.d_ff
    x = x_BxTxD.astype(self.dtype)
    if self.kind == 'gelu':
      h_BxTxF = jax.nn.gelu(self._dense('wi', x, d, f, ('embed', 'mlp'), self.init_std),
                            approximate=self.gelu_approximate)
    else:
      gate_BxTxF = self._dense('wi_gate', x, d, f, ('embed', 'mlp'), self.init_std)
      up_BxTxF = self._dense('wi_up', x, d, f, ('embed', 'mlp'), self.init_std)
      h_BxTxF = jax.nn.silu(gate_BxTxF) * up_BxTxF
    h_BxTxF = nn.with_logical_constraint(h_BxTxF, ('batch', 'length', 'mlp'))
    return self._dense('wo', h_BxTxF, f, d, ('mlp', 'embed'), self.out_init_std)
