"""The blocked dropless experts against ragged_dot and a row-by-row NumPy loop.

Both grouped paths must give every row FFN_(its expert)(row), in outputs and gradients, for
uneven routings: empty experts, fewer rows than experts, padding rows, biases and SwiGLU; a whole
MoE model must give the same logits and gradients with either.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.model import moe_blocks, moe_dispatch
from research.model.config import resolve_grouped_matmul
from tests.test_moe import apply, moe_config, random_params
from tests.test_model import random_tokens


def expert_weights(rng, kind: str, e: int, d: int, f: int, bias: bool) -> dict:
  names = ('wi_gate', 'wi_up') if kind == 'swiglu' else ('wi',)
  w = {name: rng.normal(0, 0.3, (e, d, f)) for name in names}
  w['wo'] = rng.normal(0, 0.3, (e, f, d))
  if bias:
    w.update({f'{name}_bias': rng.normal(0, 0.3, (e, f)) for name in names})
    w['wo_bias'] = rng.normal(0, 0.3, (e, d))
  return {name: jnp.asarray(v, jnp.float32) for name, v in w.items()}


def numpy_ffn(kind: str, x, w, expert: int):
  """One row through expert `expert`, in float64."""
  w = {name: np.asarray(v, np.float64)[expert] for name, v in w.items()}
  bias = lambda name: w.get(f'{name}_bias', 0.0)
  if kind == 'swiglu':
    gate = x @ w['wi_gate'] + bias('wi_gate')
    h = gate / (1 + np.exp(-gate)) * (x @ w['wi_up'] + bias('wi_up'))
  else:
    a = x @ w['wi'] + bias('wi')
    h = 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a ** 3)))
  return h @ w['wo'] + bias('wo')


CASES = {  # (rows, experts, kind, bias, share of padding rows)
    'gelu_bias_many_rows': (300, 4, 'gelu', True, 0.1),
    'swiglu_fewer_rows_than_experts': (3, 8, 'swiglu', False, 0.0),
    'gelu_one_expert_takes_all': (64, 6, 'gelu', True, 0.0),
    'swiglu_padding_and_empty_experts': (40, 5, 'swiglu', True, 0.3),
}


def case(name, seed):
  r, e, kind, bias, padding = CASES[name]
  rng = np.random.default_rng(seed)
  d, f = 8, 12
  rows = jnp.asarray(rng.normal(size=(r, d)), jnp.float32)
  ids = rng.integers(0, e, r)
  if name == 'gelu_one_expert_takes_all':
    ids[:] = e - 2
  if name == 'swiglu_padding_and_empty_experts':
    ids = np.where(ids == 1, 3, ids)  # expert 1 gets nothing
  ids = np.where(rng.random(r) < padding, e, ids)  # id e: padding
  ffn = moe_dispatch.ExpertFFN(kind, gelu_approximate=True)
  return rows, jnp.asarray(ids, jnp.int32), e, expert_weights(rng, kind, e, d, f, bias), ffn


@pytest.mark.parametrize('name', sorted(CASES))
@pytest.mark.parametrize('method', ['blocked', 'ragged_dot'])
def test_grouped_experts_equal_a_row_by_row_loop(name, method):
  rows, ids, e, w, ffn = case(name, seed=len(name))
  ffn = moe_dispatch.ExpertFFN(ffn.kind, ffn.gelu_approximate, method)
  out = np.asarray(jax.jit(lambda x, w: moe_dispatch.grouped_ffn(x, ids, e, w, ffn))(rows, w))
  real = np.flatnonzero(np.asarray(ids) < e)
  expected = np.stack([numpy_ffn(ffn.kind, np.asarray(rows[i], np.float64), w, int(ids[i]))
                       for i in real])
  np.testing.assert_allclose(out[real], expected, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize('name', sorted(CASES))
def test_blocked_gradients_equal_ragged_dot(name):
  rows, ids, e, w, ffn = case(name, seed=7 + len(name))
  real = (ids < e)[:, None]
  target = jnp.asarray(np.random.default_rng(1).normal(size=rows.shape), jnp.float32)

  def loss(method):
    f = moe_dispatch.ExpertFFN(ffn.kind, ffn.gelu_approximate, method)
    return lambda x, w: jnp.sum(jnp.where(real, moe_dispatch.grouped_ffn(x, ids, e, w, f), 0)
                                * target)

  blocked = jax.jit(jax.grad(loss('blocked'), argnums=(0, 1)))(rows, w)
  ragged = jax.jit(jax.grad(loss('ragged_dot'), argnums=(0, 1)))(rows, w)
  for a, b in zip(jax.tree.leaves(blocked), jax.tree.leaves(ragged)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
  assert float(jnp.max(jnp.abs(blocked[1]['wo']))) > 0  # some expert did get a gradient


def test_each_block_holds_one_experts_rows_and_padding_is_bounded():
  ids = jnp.asarray(np.random.default_rng(3).integers(0, 5, 77), jnp.int32)
  b = moe_blocks.block_rows(77, 5)
  source, valid, slot, group_of_block = map(np.asarray, moe_blocks.block_layout(ids, 5, b))
  n = moe_blocks.num_blocks(77, 5, b)
  assert b == 16 and n == group_of_block.shape[0] == -(-(77 + 5 * 15) // 16)
  assert len(set(slot.tolist())) == 77 and slot.max() < n * b  # no two rows share a slot
  np.testing.assert_array_equal(group_of_block[slot // b], np.asarray(ids))  # its expert's block
  np.testing.assert_array_equal(source[slot], np.arange(77))  # and the slot reads that row
  assert valid.sum() == 77 and valid[slot].all()
  assert moe_blocks.block_rows(3, 8) == 1 and moe_blocks.block_rows(10**6, 8) == 128


def test_a_moe_model_gives_the_same_logits_and_gradients_either_way():
  tokens = random_tokens(moe_config("gelu_bias_top2"), seed=4, batch=2, length=9)
  results = {}
  for method in ('blocked', 'ragged_dot'):
    c = moe_config('swiglu_top1_raw_shared_every2', moe_grouped_matmul=method)
    params = random_params(c, seed=5)
    logits = apply(c, params, tokens)
    grads = jax.jit(jax.grad(lambda p: jnp.mean(apply(c, p, tokens) ** 2)))(params)
    results[method] = (logits, grads)
  np.testing.assert_allclose(results['blocked'][0], results['ragged_dot'][0], atol=1e-5)
  for a, b in zip(jax.tree.leaves(results['blocked'][1]), jax.tree.leaves(results['ragged_dot'][1])):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)


def test_auto_is_blocked_on_cpu_and_bad_names_are_refused():
  from research.model.config import validate_model_config
  c = moe_config('gelu_bias_top2')
  assert resolve_grouped_matmul(c) == ('blocked' if jax.default_backend() == 'cpu'
                                       else 'ragged_dot')
  c.moe_grouped_matmul = 'megablocks'
  with pytest.raises(ValueError, match='moe_grouped_matmul'):
    validate_model_config(c)
