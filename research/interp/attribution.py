"""Direct logit attribution: the final residual stream split into what each head, each MLP and the
embeddings wrote into it, each read out along an answer's unembedding direction.

The final norm is linearised at the actual final residual (its centring and scale applied to every
part), so the parts and the norm's bias add up exactly to the logit (difference) the model gives.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.interp.capture import forward, prepare


@dataclasses.dataclass(frozen=True)
class Attribution:
  """values [B, C]: part c's direct contribution to row b's logit (difference); labels [C] name
  the parts ('embed', 'L0.H1', 'L0.attn_bias', 'L0.mlp', ..., 'final_norm_bias'); their sum over
  C equals `logit` [B], the model's own."""
  labels: list
  values: np.ndarray
  logit: np.ndarray


def part_labels(c) -> list:
  """Names of the parts of the final residual stream, in the order `_parts` stacks them."""
  labels = ['embed']
  for l in range(c.num_layers):
    labels += [f'L{l}.H{n}' for n in range(c.num_heads)]
    labels += [f'L{l}.attn_bias'] * c.use_bias + [f'L{l}.mlp']
  return labels + ['final_norm_bias'] * (c.final_norm and c.norm == 'layernorm')


def _parts(c, p, acts, position: int):
  """[C, B, D]: the parts (without the final norm's bias) summing to the final residual."""
  parts = [acts['resid_pre'][0][:, position]]
  for l in range(c.num_layers):
    layer = p[f'layers_{l}']
    z_BxNxH = acts['heads'][l][:, position]
    wo_NxHxD = layer['attn']['out'].astype(jnp.float32)
    parts += [z_BxNxH[:, n] @ wo_NxHxD[n] for n in range(c.num_heads)]
    if c.use_bias:
      parts.append(jnp.broadcast_to(layer['attn']['out_bias'], parts[0].shape))
    parts.append(acts['mlp_out'][l][:, position])
  return jnp.stack(parts)


def _linearised_norm(c, p, final_BxD, parts_CxBxD):
  """The final norm applied to each part with the statistics of the whole; and its bias."""
  if not c.final_norm:
    return parts_CxBxD, None
  if c.norm == 'layernorm':
    final_BxD = final_BxD - final_BxD.mean(-1, keepdims=True)
    parts_CxBxD = parts_CxBxD - parts_CxBxD.mean(-1, keepdims=True)
  inv_B1 = 1.0 / jnp.sqrt(jnp.mean(jnp.square(final_BxD), -1, keepdims=True) + c.norm_eps)
  scaled = parts_CxBxD * inv_B1 * p['final_norm']['scale']
  return scaled, p['final_norm']['bias'] if c.norm == 'layernorm' else None


def direct_logit_attribution(model_config: ml_collections.ConfigDict, params, tokens_BxT,
                             answer_B, wrong_B=None, position: int = -1) -> Attribution:
  """Each part's direct share of logit[answer] (minus logit[wrong], if given) at `position`.

  Pre-norm models only: in a post-norm model every block renormalises the stream, so it is no
  longer a sum of what the parts wrote.
  """
  if model_config.norm_position != 'pre':
    raise ValueError(f'model.norm_position={model_config.norm_position!r}: direct logit '
                     "attribution needs a pre-norm model ('pre'), whose residual stream is a sum "
                     'of its parts')
  c, p, tokens_BxT = prepare(model_config, params, tokens_BxT)
  answer_B = jnp.asarray(answer_B, jnp.int32)
  wrong_B = None if wrong_B is None else jnp.asarray(wrong_B, jnp.int32)
  values_BxC, logit_B = _attribute(c, position, p, tokens_BxT, answer_B, wrong_B)
  return Attribution(labels=part_labels(c), values=np.asarray(values_BxC),
                     logit=np.asarray(logit_B))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _attribute(c, position, p, tokens_BxT, answer_B, wrong_B):
  acts = forward(c, p, tokens_BxT)
  parts_CxBxD = _parts(c, p, acts, position)
  normed_CxBxD, bias_D = _linearised_norm(c, p, acts['resid_final'][:, position], parts_CxBxD)
  unembed_DxV = (p['embed'].T if c.tied_embedding else p['unembed']).astype(jnp.float32)
  direction_DxB = unembed_DxV[:, answer_B]
  if wrong_B is not None:
    direction_DxB = direction_DxB - unembed_DxV[:, wrong_B]
  values_CxB = jnp.einsum('cbd,db->cb', normed_CxBxD, direction_DxB)
  if bias_D is not None:
    values_CxB = jnp.concatenate([values_CxB, (bias_D @ direction_DxB)[None]])
  rows_B = jnp.arange(tokens_BxT.shape[0])
  logits_BxV = acts['logits'][:, position]
  logit_B = logits_BxV[rows_B, answer_B]
  if wrong_B is not None:
    logit_B = logit_B - logits_BxV[rows_B, wrong_B]
  return values_CxB.T, logit_B
