"""Mixture-of-Experts feed-forward: softmax router, top-k routed experts, shared experts, aux losses.

The router scores each token against the E experts (float32 logits x @ router); the softmax over
all experts gives probabilities p, a token goes to its k most probable experts with gate weights
their probabilities (renormalised to sum to 1 if `model.router_renormalize`). Where the tokens go
and how they come back is `moe_dispatch`. Shared experts (DeepSeek) are one dense MLP of width
num_shared_experts x moe_d_ff added for every token.

Each MoE layer sows into the 'moe' collection (read it with `mutable=['moe']`):
- `load_balance_loss`: Switch (Fedus et al. 2021) E * sum_e f_e P_e, with f_e the fraction of the
  batch's routed assignments (before any capacity drop) that chose e and P_e the mean router
  probability of e over all experts' softmax (before top-k); 1.0 when perfectly balanced;
- `router_z_loss`: ST-MoE (Zoph et al. 2022) mean over tokens of logsumexp(logits)^2;
- `expert_load`: f, [E]; `router_prob`: P, [E]; `dropped_fraction`: the share of assignments
  over capacity.
`aux_loss` sums the weighted losses over layers for the train step. All but the load-balancing
loss are means over tokens, so over equal microbatches (pipeline stages) the batch's value is the
mean of theirs; the load-balancing loss is not (it is a product of two means) and
`from_microbatch_means` recomputes it from the mean f and P, equal to the whole batch's.
"""

from __future__ import annotations

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from research.model import moe_dispatch
from research.model.config import expert_d_ff, resolve_grouped_matmul
from research.model.mlp import MLP

COLLECTION = 'moe'
SOWN = ('load_balance_loss', 'router_z_loss', 'expert_load', 'router_prob', 'dropped_fraction')


def route(logits_BxTxE, experts_per_token: int, renormalize: bool):
  """(probabilities [B, T, E], gate weights [B, T, X], chosen experts [B, T, X]), float32."""
  probs_BxTxE = jax.nn.softmax(logits_BxTxE.astype(jnp.float32), axis=-1)
  weights_BxTxX, experts_BxTxX = jax.lax.top_k(probs_BxTxE, experts_per_token)
  if renormalize:
    weights_BxTxX = weights_BxTxX / jnp.sum(weights_BxTxX, axis=-1, keepdims=True)
  return probs_BxTxE, weights_BxTxX, experts_BxTxX


def expert_load(experts_BxTxX, num_experts: int):
  """f_e: the fraction of all routed assignments that went to expert e, [E]."""
  return jnp.mean(jax.nn.one_hot(experts_BxTxX, num_experts, dtype=jnp.float32), axis=(0, 1, 2))


def router_prob(probs_BxTxE):
  """P_e: the mean router probability of expert e over all tokens (before top-k), [E]."""
  return jnp.mean(probs_BxTxE, axis=(0, 1))


def balance(load_E, prob_E):
  """E * sum_e f_e P_e from the expert load f and mean router probability P."""
  return load_E.shape[-1] * jnp.sum(load_E * prob_E, axis=-1)


def load_balance_loss(probs_BxTxE, experts_BxTxX):
  """Switch load-balancing loss E * sum_e f_e P_e (P: softmax over all experts, before top-k)."""
  return balance(expert_load(experts_BxTxX, probs_BxTxE.shape[-1]), router_prob(probs_BxTxE))


def router_z_loss(logits_BxTxE):
  """mean over tokens of logsumexp(router logits)^2."""
  return jnp.mean(jnp.square(jax.nn.logsumexp(logits_BxTxE.astype(jnp.float32), axis=-1)))


class MoE(nn.Module):
  """`x [B, T, D] -> [B, T, D]`: the routed experts' weighted sum, plus the shared experts."""
  config: ml_collections.ConfigDict
  init_std: float
  out_init_std: float
  dtype: jnp.dtype
  param_dtype: jnp.dtype

  def _expert_weights(self, d: int, f: int) -> dict:
    c, e = self.config, self.config.num_experts
    names = ('wi_gate', 'wi_up') if c.mlp == 'swiglu' else ('wi',)
    param = lambda name, init, axes, shape: self.param(
        name, nn.with_logical_partitioning(init, axes), shape, self.param_dtype)
    w = {name: param(name, nn.initializers.normal(self.init_std), ('exp', 'embed', 'mlp'),
                     (e, d, f)) for name in names}
    w['wo'] = param('wo', nn.initializers.normal(self.out_init_std), ('exp', 'mlp', 'embed'),
                    (e, f, d))
    if c.use_bias:
      for name in names:
        w[f'{name}_bias'] = param(f'{name}_bias', nn.initializers.zeros, ('exp', 'mlp'), (e, f))
      w['wo_bias'] = param('wo_bias', nn.initializers.zeros, ('exp', 'embed'), (e, d))
    return {name: x.astype(self.dtype) for name, x in w.items()}

  @nn.compact
  def __call__(self, x_BxTxD):
    c = self.config
    b, t, d = x_BxTxD.shape
    e, k, f = c.num_experts, c.experts_per_token, expert_d_ff(c)
    x_BxTxD = x_BxTxD.astype(self.dtype)
    router_DxE = self.param('router', nn.with_logical_partitioning(
        nn.initializers.normal(self.init_std), ('embed', None)), (d, e), self.param_dtype)
    logits_BxTxE = jnp.einsum('btd,de->bte', x_BxTxD.astype(jnp.float32),
                              router_DxE.astype(jnp.float32))
    probs_BxTxE, weights_BxTxX, experts_BxTxX = route(logits_BxTxE, k, c.router_renormalize)
    capacity = (moe_dispatch.expert_capacity(c.expert_capacity_factor, t, k, e)
                if c.expert_capacity_factor else 0)
    if capacity:
      slots_BxTxX, kept_BxTxX = moe_dispatch.capacity_slots(experts_BxTxX, e, capacity)
    else:
      slots_BxTxX, kept_BxTxX = jnp.zeros_like(experts_BxTxX), jnp.ones(experts_BxTxX.shape, bool)
    w = self._expert_weights(d, f)
    ffn = moe_dispatch.ExpertFFN(c.mlp, c.gelu_approximate, resolve_grouped_matmul(c))
    if c.moe_impl == 'reference':
      y_BxTxD = moe_dispatch.reference_experts(x_BxTxD, experts_BxTxX, weights_BxTxX, kept_BxTxX,
                                               w, ffn)
    else:
      y_BxTxD = moe_dispatch.routed_experts(x_BxTxD, experts_BxTxX, weights_BxTxX, slots_BxTxX,
                                            kept_BxTxX, w, ffn, capacity)
    if c.num_shared_experts:
      y_BxTxD += MLP(kind=c.mlp, d_ff=c.num_shared_experts * f, use_bias=c.use_bias,
                     gelu_approximate=c.gelu_approximate, init_std=self.init_std,
                     out_init_std=self.out_init_std, dtype=self.dtype,
                     param_dtype=self.param_dtype, name='shared')(x_BxTxD)
    self.sow(COLLECTION, 'load_balance_loss', load_balance_loss(probs_BxTxE, experts_BxTxX))
    self.sow(COLLECTION, 'router_z_loss', router_z_loss(logits_BxTxE))
    self.sow(COLLECTION, 'expert_load', expert_load(experts_BxTxX, e))
    self.sow(COLLECTION, 'router_prob', router_prob(probs_BxTxE))
    self.sow(COLLECTION, 'dropped_fraction', 1.0 - jnp.mean(kept_BxTxX.astype(jnp.float32)))
    return nn.with_logical_constraint(y_BxTxD, ('batch', 'length', 'embed'))


# ---- reading what the layers sowed --------------------------------------------------------------

def per_layer(sown, config, name: str) -> dict:
  """{decoder layer index: the value it sowed under `name`} from a 'moe' collection.

  Unscanned layers sow under `layers_{i}`; scanned ones under `layers`, stacked along a leading
  axis of layers, or of groups of moe_every layers (`layers/block_{j}`: layer g * moe_every + j).
  """
  out = {}
  for path, values in flax.traverse_util.flatten_dict(flax.core.unfreeze(sown)).items():
    if path[-1] != name:
      continue
    value = values[0]
    if path[0].startswith('layers_'):
      out[int(path[0][len('layers_'):])] = value
      continue
    grouped = path[1].startswith('block_')
    offset = int(path[1][len('block_'):]) if grouped else 0
    step = config.moe_every if grouped else 1
    for i in range(value.shape[0]):
      out[i * step + offset] = value[i]
  return dict(sorted(out.items()))


def from_microbatch_means(sown):
  """The 'moe' collection of a whole batch from the mean over its equal microbatches of theirs:
  every sown value is a mean over tokens except the load-balancing loss, recomputed from the mean
  f and P (any leading axis of layers kept)."""
  def fix(tree):
    if not isinstance(tree, dict):
      return tree
    tree = {name: fix(value) for name, value in tree.items()}
    if 'load_balance_loss' in tree:
      tree['load_balance_loss'] = (balance(tree['expert_load'][0], tree['router_prob'][0]),)
    return tree
  return fix(flax.core.unfreeze(sown))


def aux_loss(sown, config) -> jax.Array:
  """Weighted sum over MoE layers of the load-balancing and router z-losses (0.0 for dense)."""
  total = jnp.zeros((), jnp.float32)
  for name, weight in (('load_balance_loss', config.load_balance_loss_weight),
                       ('router_z_loss', config.router_z_loss_weight)):
    if weight:
      total += weight * sum(jnp.sum(v) for v in per_layer(sown, config, name).values())
  return total


def metrics(sown, config) -> dict:
  """Flat scalar metrics for the logs: the aux losses summed over layers, and per layer the most
  and least loaded expert (as multiples of the even share 1/E) and the dropped fraction."""
  out = {}
  if not sown:
    return out
  for name in ('load_balance_loss', 'router_z_loss'):
    out[f'moe/{name}'] = sum(per_layer(sown, config, name).values())
  for layer, load_E in per_layer(sown, config, 'expert_load').items():
    out[f'moe/layer{layer}/load_max'] = jnp.max(load_E) * load_E.shape[-1]
    out[f'moe/layer{layer}/load_min'] = jnp.min(load_E) * load_E.shape[-1]
  for layer, dropped in per_layer(sown, config, 'dropped_fraction').items():
    out[f'moe/layer{layer}/dropped'] = dropped
  return out
