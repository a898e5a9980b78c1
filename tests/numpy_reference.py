"""An independent float64 NumPy forward pass of the transformer, written with explicit loops.

It shares nothing with `research.model` but the parameter names, so agreement checks positions,
norms, attention (with its mask and GQA sharing), the feed-forward and the output layer.
"""

import math

import numpy as np


def gelu(x, approximate):
  if approximate:
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
  erf = np.vectorize(math.erf)
  return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def norm(x, p, kind, eps):
  if kind == 'layernorm':
    x = x - x.mean(-1, keepdims=True)
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * p['scale'] + p['bias']
  return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * p['scale']


def sinusoid(pos, d):
  out = np.zeros(d)
  for i in range(d):
    freq = 1.0 / 10000 ** ((i - i % 2) / d)
    out[i] = math.sin(pos * freq) if i % 2 == 0 else math.cos(pos * freq)
  return out


def rope(v, pos, base):
  """Rotate pairs (i, i + h/2) of one head vector by pos * base^(-2i/h)."""
  h = v.shape[-1]
  out = v.copy()
  for i in range(h // 2):
    theta = pos * base ** (-2 * i / h)
    a, b = v[i], v[i + h // 2]
    out[i] = a * math.cos(theta) - b * math.sin(theta)
    out[i + h // 2] = b * math.cos(theta) + a * math.sin(theta)
  return out


def attention(x, p, c, scale=None):
  """Loop over query positions and heads; key j is visible to query i iff i-W < j <= i. Scores
  are q.k times `scale` (default 1/sqrt(head size))."""
  t = x.shape[0]
  n, k = c.num_heads, c.num_kv_heads
  q = np.einsum('td,dnh->tnh', x, p['query'])
  kk = np.einsum('td,dkh->tkh', x, p['key'])
  v = np.einsum('td,dkh->tkh', x, p['value'])
  if c.use_bias:
    q, kk, v = q + p['query_bias'], kk + p['key_bias'], v + p['value_bias']
  if c.position == 'rope':
    q = np.stack([[rope(q[i, j], i, c.rope_base) for j in range(n)] for i in range(t)])
    kk = np.stack([[rope(kk[i, j], i, c.rope_base) for j in range(k)] for i in range(t)])
  h = q.shape[-1]
  scale = 1 / math.sqrt(h) if scale is None else scale
  out = np.zeros_like(q)
  for i in range(t):
    for head in range(n):
      kv = head // (n // k)
      lo = max(0, i - c.sliding_window + 1) if c.sliding_window else 0
      scores = np.array([q[i, head] @ kk[j, kv] * scale for j in range(lo, i + 1)])
      w = np.exp(scores - scores.max())
      w /= w.sum()
      out[i, head] = sum(w[j - lo] * v[j, kv] for j in range(lo, i + 1))
  y = np.einsum('tnh,nhd->td', out, p['out'])
  return y + p['out_bias'] if c.use_bias else y


def mlp(x, p, c):
  b = lambda name: p[name + '_bias'] if c.use_bias else 0.0
  if c.mlp == 'gelu':
    hidden = gelu(x @ p['wi'] + b('wi'), c.gelu_approximate)
  else:
    gate = x @ p['wi_gate'] + b('wi_gate')
    hidden = gate / (1 + np.exp(-gate)) * (x @ p['wi_up'] + b('wi_up'))
  return hidden @ p['wo'] + b('wo')


def moe(x, p, c, record=None):
  """Mixture of Experts, token by token: softmax router, top-k, capacity per sequence counted in
  choice-major order, shared experts; appends (router logits, chosen experts, kept) to `record`."""
  t, e, k = x.shape[0], c.num_experts, c.experts_per_token
  logits = x @ p['router']
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  chosen = np.stack([np.argsort(-probs[i], kind='stable')[:k] for i in range(t)])
  gates = np.stack([probs[i, chosen[i]] for i in range(t)])
  if c.router_renormalize:
    gates /= gates.sum(-1, keepdims=True)
  kept = np.ones((t, k), bool)
  if c.expert_capacity_factor:
    capacity = min(t, math.ceil(c.expert_capacity_factor * t * k / e))
    taken = [0] * e
    for j in range(k):
      for i in range(t):
        kept[i, j] = taken[chosen[i, j]] < capacity
        taken[chosen[i, j]] += 1
  out = np.zeros_like(x)
  for i in range(t):
    for j in range(k):
      if kept[i, j]:
        expert = {name: w[chosen[i, j]] for name, w in p.items() if name not in ('router',
                                                                                  'shared')}
        out[i] += gates[i, j] * mlp(x[i:i + 1], expert, c)[0]
  if c.num_shared_experts:
    out += mlp(x, p['shared'], c)
  if record is not None:
    record.append((logits, chosen, kept))
  return out


def feed_forward(layer, x, p, c, record):
  if c.num_experts and (layer + 1) % c.moe_every == 0:
    return moe(x, p, c, record)
  return mlp(x, p, c)


def forward(c, params, tokens, attention_scale=None, logit_multiplier=1.0, record=None):
  """Logits [T, V] for one sequence of token ids (attention scores scaled by `attention_scale`,
  default 1/sqrt(head size); logits multiplied by `logit_multiplier`); MoE layers append their
  routing to `record`."""
  p = {k: v for k, v in params.items()}
  x = np.stack([p['embed'][tok] for tok in tokens])
  for i in range(len(tokens)):
    if c.position == 'learned':
      x[i] = x[i] + p['pos_embed']['embedding'][i]
    elif c.position == 'sinusoidal':
      x[i] = x[i] + sinusoid(i, c.d_model)
  for layer in range(c.num_layers):
    lp = p[f'layers_{layer}']
    if c.norm_position == 'pre':
      x = x + attention(norm(x, lp['attn_norm'], c.norm, c.norm_eps), lp['attn'], c,
                        attention_scale)
      x = x + feed_forward(layer, norm(x, lp['mlp_norm'], c.norm, c.norm_eps), lp['mlp'], c,
                           record)
    else:
      x = norm(x + attention(x, lp['attn'], c, attention_scale), lp['attn_norm'], c.norm,
               c.norm_eps)
      x = norm(x + feed_forward(layer, x, lp['mlp'], c, record), lp['mlp_norm'], c.norm,
               c.norm_eps)
  if c.final_norm:
    x = norm(x, p['final_norm'], c.norm, c.norm_eps)
  unembed = p['embed'].T if c.tied_embedding else p['unembed']
  return x @ unembed * logit_multiplier
