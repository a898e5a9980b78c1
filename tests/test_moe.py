"""Mixture of Experts against a token-by-token NumPy loop, the dense reference and hand cases.

The dropless grouped path (sort + ragged_dot) and the capacity path must equal every-expert-on-
every-token in outputs and in gradients (router included); capacity drops exactly what the
choice-major rule says; the auxiliary losses equal hand computations and reach the training loss
with scanned and unscanned layers alike.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research.model import Transformer, moe, moe_dispatch
from research.train.step import make_train_step
from research.train.state import TrainState
from tests import numpy_reference
from tests.test_model import random_tokens, small_config, stack_layers

VARIANTS = {
    'gelu_bias_top2': dict(num_experts=4, experts_per_token=2),
    'swiglu_top1_raw_shared_every2': dict(
        num_experts=4, experts_per_token=1, router_renormalize=False, mlp='swiglu',
        use_bias=False, norm='rmsnorm', position='rope', num_shared_experts=1, moe_d_ff=24,
        moe_every=2),
    'capacity_swiglu_top3': dict(num_experts=6, experts_per_token=3, expert_capacity_factor=0.75,
                                 mlp='swiglu', num_kv_heads=2, position='rope'),
}


def moe_config(name, **overrides):
  return small_config(**{**VARIANTS[name], **overrides})


def random_params(c, seed):
  """Params of the model's shapes drawn in NumPy: weights and biases ~ N(0, 0.1^2), norm scales
  ~ 1 + N(0, 0.1^2) (nothing to compile: initialising MoE layers op by op is slow)."""
  shapes = jax.eval_shape(lambda: nn.unbox(Transformer(c).init(
      jax.random.key(0), jnp.zeros((1, 4), jnp.int32))['params']))
  rng = np.random.default_rng(seed)
  draw = lambda path, s: jnp.asarray(
      0.1 * rng.normal(size=s.shape) + (path[-1].key == 'scale'), jnp.float32)
  return jax.tree_util.tree_map_with_path(draw, shapes)


def apply(c, params, tokens, **kwargs):
  return jax.jit(lambda p, t: Transformer(c).apply({'params': p}, t, **kwargs))(params, tokens)


def numpy_forward(c, params, tokens):
  """(logits [B, T, V], per-layer routing records) from the float64 NumPy loop."""
  params64 = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  records, logits = [], []
  for b in range(tokens.shape[0]):
    record = []
    logits.append(numpy_reference.forward(c, params64, np.asarray(tokens[b]), record=record))
    records.append(record)
  return np.stack(logits), records


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_matches_token_by_token_numpy_loop(name):
  c = moe_config(name)
  params = random_params(c, 3)
  tokens = random_tokens(c, 3)
  logits = apply(c, params, tokens)
  expected, records = numpy_forward(c, params, tokens)
  np.testing.assert_allclose(np.asarray(logits), expected, atol=2e-4, rtol=1e-4)
  if c.expert_capacity_factor:  # the case must exercise drops
    assert not all(r[2].all() for rec in records for r in rec)


def _loss(c, params, tokens):
  """Cross-entropy plus the MoE auxiliary losses, as the train step computes them."""
  logits, sown = Transformer(c).apply({'params': params}, tokens, mutable=['moe'])
  nll = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], tokens[:, 1:]).mean()
  return nll + moe.aux_loss(sown['moe'], c)


@pytest.mark.parametrize('name', ['gelu_bias_top2', 'capacity_swiglu_top3'])
def test_grouped_equals_dense_reference_in_outputs_and_gradients(name):
  c = moe_config(name, load_balance_loss_weight=0.1, router_z_loss_weight=0.01)
  params = random_params(c, 5)
  tokens = random_tokens(c, 5)
  grouped = jax.jit(jax.value_and_grad(lambda p: _loss(c, p, tokens)))(params)
  reference_config = moe_config(name, load_balance_loss_weight=0.1, router_z_loss_weight=0.01,
                                moe_impl='reference')
  reference = jax.jit(jax.value_and_grad(lambda p: _loss(reference_config, p, tokens)))(params)
  np.testing.assert_allclose(grouped[0], reference[0], rtol=1e-6)
  flat_grouped = jax.tree_util.tree_flatten_with_path(grouped[1])[0]
  flat_reference = jax.tree.leaves(reference[1])
  routers = [a for path, a in flat_grouped if 'router' in jax.tree_util.keystr(path)]
  assert routers and all(float(jnp.max(jnp.abs(a))) > 1e-4 for a in routers)
  for (path, a), b in zip(flat_grouped, flat_reference):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6, rtol=1e-5,
                               err_msg=jax.tree_util.keystr(path))


def test_capacity_keeps_the_first_assignments_in_choice_major_order():
  # One sequence of 4 tokens, top-2 of 3 experts, 2 slots each. Choice-major order is
  # t0:e0 t1:e0 t2:e0 t3:e1 | t0:e1 t1:e2 t2:e1 t3:e0, so expert 0 fills with t0, t1 and drops
  # t2 (first choice) and t3 (second choice); expert 1 takes t3, t0 and drops t2's second choice.
  experts = jnp.array([[[0, 1], [0, 2], [0, 1], [1, 0]]])
  slots, kept = jax.jit(moe_dispatch.capacity_slots, static_argnums=(1, 2))(experts, 3, 2)
  np.testing.assert_array_equal(slots[0], [[0, 1], [1, 0], [2, 2], [0, 3]])
  np.testing.assert_array_equal(kept[0], [[True, True], [True, True], [False, False],
                                          [True, False]])
  # The capacity path computes exactly the kept assignments, each with its gate.
  rng = np.random.default_rng(0)
  d, f = 5, 7
  x = jnp.asarray(rng.normal(size=(1, 4, d)), jnp.float32)
  gates = jnp.asarray(rng.uniform(0.2, 1.0, size=(1, 4, 2)), jnp.float32)
  w = {'wi': rng.normal(size=(3, d, f)), 'wo': rng.normal(size=(3, f, d))}
  ffn = moe_dispatch.ExpertFFN('gelu', True)
  got = jax.jit(lambda *args: moe_dispatch.routed_experts(*args, ffn, capacity=2))(
      x, experts, gates, slots, kept, jax.tree.map(jnp.float32, w))
  expected = np.zeros((4, d))
  for t in range(4):
    for j in range(2):
      if kept[0, t, j]:
        e = int(experts[0, t, j])
        hidden = numpy_reference.gelu(np.asarray(x[0, t], np.float64) @ w['wi'][e], True)
        expected[t] += float(gates[0, t, j]) * hidden @ w['wo'][e]
  np.testing.assert_allclose(np.asarray(got[0]), expected, atol=1e-5)
  assert np.all(np.asarray(got[0, 2]) == 0)  # both of t2's assignments dropped
  assert moe_dispatch.expert_capacity(1.0, 4, 2, 3) == 3  # ceil(1.0 x 4 x 2 / 3)
  assert moe_dispatch.expert_capacity(4.0, 4, 2, 3) == 4  # never more than T


def test_aux_losses_equal_hand_computation():
  # Two experts, three tokens, top-1: the first two tokens choose expert 0, the last expert 1.
  probs = jnp.array([[[0.7, 0.3], [0.6, 0.4], [0.1, 0.9]]])
  experts = jnp.array([[[0], [0], [1]]])
  f = np.array([2 / 3, 1 / 3])
  p = np.array([(0.7 + 0.6 + 0.1) / 3, (0.3 + 0.4 + 0.9) / 3])
  assert math.isclose(float(moe.load_balance_loss(probs, experts)), 2 * float(f @ p), rel_tol=1e-6)
  np.testing.assert_allclose(moe.expert_load(experts, 2), f, rtol=1e-6)
  balanced = jnp.full((1, 4, 4), 0.25)
  assert math.isclose(float(moe.load_balance_loss(balanced, jnp.array([[[0], [1], [2], [3]]]))),
                      1.0, rel_tol=1e-6)
  logits = jnp.array([[[1.0, 2.0], [0.5, -0.5], [3.0, 0.0]]])
  lse = [math.log(math.exp(a) + math.exp(b)) for a, b in [(1.0, 2.0), (0.5, -0.5), (3.0, 0.0)]]
  assert math.isclose(float(moe.router_z_loss(logits)), sum(v * v for v in lse) / 3,
                      rel_tol=1e-6)


def _hand_aux(c, records):
  """Per-layer (load-balancing, z) losses over the whole batch, from the NumPy routing records."""
  losses = []
  for layer in range(len(records[0])):
    logits = np.concatenate([r[layer][0] for r in records])  # [B T, E]
    chosen = np.concatenate([r[layer][1] for r in records])  # [B T, k]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    f = np.bincount(chosen.reshape(-1), minlength=c.num_experts) / chosen.size
    lse = np.log(np.exp(logits).sum(-1))
    losses.append((c.num_experts * float(f @ probs.mean(0)), float(np.mean(lse ** 2))))
  return losses


@pytest.mark.parametrize('name', ['swiglu_top1_raw_shared_every2'])
def test_aux_losses_reach_the_training_loss_scanned_and_unscanned(name):
  weights = dict(load_balance_loss_weight=0.3, router_z_loss_weight=0.05)
  c = moe_config(name, **weights)
  params = random_params(c, 9)
  tokens = random_tokens(c, 9, batch=4, length=8)
  _, records = numpy_forward(c, params, tokens)
  hand = _hand_aux(c, records)
  expected_aux = sum(0.3 * lb + 0.05 * z for lb, z in hand)
  batch = {'inputs': tokens, 'targets': jnp.roll(tokens, 1, axis=1)}
  results = {}
  for scan in (False, True):
    cs = moe_config(name, scan_layers=scan, **weights)
    p = stack_layers(params, c.num_layers) if scan and c.moe_every == 1 else params
    if scan and c.moe_every > 1:  # scanned in groups of moe_every layers: layers/block_j
      groups = [{f'block_{j}': params[f'layers_{g * c.moe_every + j}']
                 for j in range(c.moe_every)} for g in range(c.num_layers // c.moe_every)]
      p = {k: v for k, v in params.items() if not k.startswith('layers_')}
      p['layers'] = jax.tree.map(lambda *xs: jnp.stack(xs), *groups)
    sgd = optax.sgd(0.0)
    step = jax.jit(make_train_step(cs, sgd))
    _, metrics = step(TrainState(jnp.zeros((), jnp.int32), p, sgd.init(p)), batch)
    aux = float(metrics['total_loss'] - metrics['loss'])
    np.testing.assert_allclose(aux, expected_aux, rtol=1e-4)
    moe_layers = [i for i in range(c.num_layers) if (i + 1) % c.moe_every == 0]
    np.testing.assert_allclose(float(metrics['moe/load_balance_loss']),
                               sum(lb for lb, _ in hand), rtol=1e-4)
    for i in moe_layers:
      assert float(metrics[f'moe/layer{i}/load_max']) >= 1.0 >= float(
          metrics[f'moe/layer{i}/load_min'])
      assert float(metrics[f'moe/layer{i}/dropped']) == 0.0
    results[scan] = (float(metrics['total_loss']), float(metrics['grad_norm']))
  np.testing.assert_allclose(results[True], results[False], rtol=1e-5)


def test_load_balance_gradient_reaches_the_router_through_the_probabilities():
  # f is a count (no gradient); the loss moves the router through P: with only the aux loss
  # weighted, the router's gradient equals that of E * sum_e f_e P_e computed by hand in JAX.
  c = moe_config('gelu_bias_top2', load_balance_loss_weight=1.0, router_z_loss_weight=0.0,
                 num_layers=1)
  params = random_params(c, 2)
  tokens = random_tokens(c, 2)

  def aux_only(p):
    _, sown = Transformer(c).apply({'params': p}, tokens, mutable=['moe'])
    return moe.aux_loss(sown['moe'], c)

  def by_hand(router):
    p = {**params, 'layers_0': {**params['layers_0'],
                                'mlp': {**params['layers_0']['mlp'], 'router': router}}}
    x = Transformer(c).apply({'params': p}, tokens, capture_intermediates=True,
                             mutable=['intermediates'])[1]['intermediates']
    h = x['layers_0']['mlp_norm']['__call__'][0]
    probs = jax.nn.softmax(h @ router, -1)
    f = jax.lax.stop_gradient(moe.expert_load(jax.lax.top_k(probs, 2)[1], 4))
    return 4 * jnp.sum(f * probs.mean((0, 1)))

  got = jax.jit(jax.grad(aux_only))(params)['layers_0']['mlp']['router']
  want = jax.jit(jax.grad(by_hand))(params['layers_0']['mlp']['router'])
  assert float(jnp.max(jnp.abs(want))) > 1e-4
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
