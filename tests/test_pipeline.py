"""Pipeline parallelism: the schedules compute the plain stack's function and gradients; MoE
layers' aux losses leave the stages equal to the whole batch's; on 8 fake CPU devices, pipelined
AdamW training (circular next to FSDP; MoE under GPipe and circular next to expert parallelism)
matches single-device training, and its checkpoint restores bitwise onto one device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optax

from research.config import base_config
from research.model import pipeline
from research.model.pipeline import Schedule, bubble_fraction, theoretical_bubble
from research.train.state import TrainState
from research.train.step import make_train_step
from research.train.validate import validate_config
from tests.test_model import random_tokens, stack_layers
from tests.test_moe import _hand_aux, moe_config, numpy_forward, random_params
from tests.test_sharding import (assert_training_matches, restore_on_one_device,
                                 single_and_mesh_runs)

SINGLE = ('pipe@1,1,1', 'moe_pipe@1,1,1')  # each variant's schedules: this model on one device
# The dense model under the circular schedule (strided stages, the loop back to stage 0) next to
# FSDP; GPipe is its R = 1 case, checked against the plain loop above. The MoE model (aux losses
# weighted 0.1 and 0.01, so they move the params) under GPipe on 4 stages and circular on 2,
# each next to 2-way expert parallelism (the all-to-all inside each stage).
MESHES = ('pipe_circular@1,2,4,1,1', 'moe_pipe@1,4,1,2,1', 'moe_pipe_circular@1,2,2,2,1')


@pytest.mark.parametrize('schedule', [Schedule(4, 2), Schedule(3, 5), Schedule(2, 2, 2),
                                      Schedule(4, 6, 3)])
def test_idle_slots_of_the_schedule_match_the_bubble_formula(schedule):
  assert bubble_fraction(schedule) == pytest.approx(theoretical_bubble(schedule), abs=1e-12)
  # Every stage works on each of its R M (chunk, microbatch) pairs exactly once.
  for stage in range(schedule.num_stages):
    busy = sum(schedule.active(t, stage) for t in range(schedule.num_iterations))
    assert busy == schedule.num_repeats * schedule.num_microbatches


def test_pipelined_layers_give_the_plain_loops_outputs_and_gradients():
  """`pipeline.run` against the layers applied in order by a plain loop, on random inputs: a
  wrong stage order, hand-off or microbatch slot changes the outputs or the gradients."""
  num_layers, d = 8, 6
  keys = jax.random.split(jax.random.key(0), 4)
  params = {'w': jax.random.normal(keys[0], (num_layers, d, d)) / d ** 0.5,
            'b': jax.random.normal(keys[1], (num_layers, d))}
  x_BxTxD = jax.random.normal(keys[2], (8, 3, d))
  positions_BxT = jax.random.randint(keys[3], (8, 3), 0, 5)

  def layer(p, x_BxTxD, positions_BxT):  # position-dependent, so microbatch rows must line up
    return jnp.tanh(x_BxTxD @ p['w'] + p['b']) * (1 + 0.1 * positions_BxT[..., None]) + x_BxTxD

  def loop(params):
    x = x_BxTxD
    for l in range(num_layers):
      x = layer(jax.tree.map(lambda w: w[l], params), x, positions_BxT)
    return x

  weights_BxTxD = jax.random.normal(jax.random.key(5), x_BxTxD.shape)
  want = loop(params)
  want_grads = jax.grad(lambda p: jnp.sum(loop(p) * weights_BxTxD))(params)
  for schedule in (Schedule(4, 2), Schedule(2, 2, 2), Schedule(4, 8, 2)):
    pipelined = jax.jit(lambda p, s=schedule: pipeline.run(s, layer, p, x_BxTxD, positions_BxT))
    np.testing.assert_allclose(pipelined(params), want, rtol=1e-5, atol=1e-5)
    grads = jax.grad(lambda p: jnp.sum(pipelined(p) * weights_BxTxD))(params)
    for got, expected in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
      np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def _microbatch_rows(batch: int, m: int):
  """The rows of each of the m microbatches, as `pipeline` cuts a batch."""
  return [list(range(i, batch, m)) for i in range(m)]


def _scanned(params, c):
  """Unscanned layers_i params -> the scanned stack: [L, ...], or with `moe_every` > 1 groups
  `layers/block_j` [L / moe_every, ...] (layer g moe_every + j)."""
  if c.moe_every == 1:
    return stack_layers(params, c.num_layers)
  groups = [{f'block_{j}': params[f'layers_{g * c.moe_every + j}'] for j in range(c.moe_every)}
            for g in range(c.num_layers // c.moe_every)]
  out = {k: v for k, v in params.items() if not k.startswith('layers_')}
  out['layers'] = jax.tree.map(lambda *xs: jnp.stack(xs), *groups)
  return out


@pytest.mark.parametrize('name, schedule', [
    ('gelu_bias_top2', Schedule(4, 2)),
    ('gelu_bias_top2', Schedule(2, 2, 2)),
    ('swiglu_top1_raw_shared_every2', Schedule(2, 2)),  # stages of groups of a dense + MoE layer
], ids=['gpipe', 'circular', 'gpipe_moe_every2'])
def test_pipelined_moe_aux_losses_equal_the_whole_batch_ones(name, schedule):
  """One SGD step of a 4-layer MoE model pipelined (GPipe on 4 stages, circular on 2 stages x 2
  chunks, GPipe over groups of 2 layers; 2 microbatches) gives the unpipelined step's total
  loss, aux figures and gradients; the load-balancing loss is the whole batch's (from the
  microbatches' mean f and P), checked against a NumPy forward, and not the mean of the
  microbatches' own losses, which differs."""
  weights = dict(load_balance_loss_weight=0.3, router_z_loss_weight=0.05)
  c = moe_config(name, num_layers=4, **weights)
  params = random_params(c, 4)
  tokens = random_tokens(c, 4, batch=8, length=8)
  _, records = numpy_forward(c, params, tokens)
  hand = _hand_aux(c, records)  # per MoE layer (load-balancing, z), over the whole batch
  per_microbatch = [_hand_aux(c, [records[b] for b in rows])
                    for rows in _microbatch_rows(8, 2)]
  mean_of_microbatches = sum(np.mean([p[layer][0] for p in per_microbatch])
                             for layer in range(len(hand)))
  whole_batch = sum(lb for lb, _ in hand)
  assert abs(mean_of_microbatches - whole_batch) > 1e-3 * whole_batch  # the choice matters

  scanned = moe_config(name, num_layers=4, scan_layers=True, **weights)
  stacked = _scanned(params, c)
  batch = {'inputs': tokens, 'targets': jnp.roll(tokens, 1, axis=1)}
  sgd = optax.sgd(1.0)  # new params = params - gradients
  state = TrainState(jnp.zeros((), jnp.int32), stacked, sgd.init(stacked))
  plain_state, plain = jax.jit(make_train_step(scanned, sgd))(state, batch)
  new_state, metrics = jax.jit(make_train_step(scanned, sgd, pipeline=schedule))(state, batch)
  np.testing.assert_allclose(float(metrics['moe/load_balance_loss']), whole_batch, rtol=1e-4)
  np.testing.assert_allclose(float(metrics['moe/router_z_loss']), sum(z for _, z in hand),
                             rtol=1e-4)
  assert sorted(metrics) == sorted(plain)
  for name in plain:  # total loss, per-layer loads and dropped fractions, grad norm
    np.testing.assert_allclose(metrics[name], plain[name], rtol=1e-5, err_msg=name)
  assert float(metrics['total_loss'] - metrics['loss']) > 0.1
  for got, want in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(plain_state.params)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _pipeline_config(**train):
  c = base_config()
  c.model.update(num_layers=4, scan_layers=True)
  c.train.update(batch_size=8, **train)
  c.mesh.ici = (1, 4, 2, 1, 1)
  return c


@pytest.mark.parametrize('change, field', [
    (lambda c: c.model.update(scan_layers=False), 'model.scan_layers'),
    (lambda c: c.model.update(num_layers=6), 'model.num_layers'),
    # MoE every 2nd layer is pipelined in groups of 2 layers: 2 groups on 4 stages cannot go.
    (lambda c: c.model.update(num_experts=4, moe_every=2), 'model.num_layers'),
    (lambda c: c.train.update(pipeline_microbatches=3), 'train.pipeline_microbatches'),
    (lambda c: c.train.update(pipeline_microbatches=8), 'train.pipeline_microbatches'),
    (lambda c: (c.model.update(num_layers=8),
                c.train.update(pipeline_schedule='circular', pipeline_microbatches=2)),
     'train.pipeline_microbatches'),
    (lambda c: c.train.update(pipeline_schedule='circular', pipeline_repeats=1),
     'train.pipeline_repeats'),
    (lambda c: c.train.update(pipeline_schedule='zigzag'), 'train.pipeline_schedule'),
])
def test_impossible_pipelines_are_refused_naming_the_field(change, field):
  config = _pipeline_config()
  validate_config(config, num_devices=8)  # GPipe, 4 stages, 4 microbatches of 2 over fsdp=2
  change(config)
  with pytest.raises(ValueError, match=field.replace('.', r'\.')):
    validate_config(config, num_devices=8)


@pytest.fixture(scope='module')
def results(tmp_path_factory):
  return single_and_mesh_runs(tmp_path_factory, 'pipeline', SINGLE, MESHES)


@pytest.mark.parametrize('mesh', MESHES)
def test_pipelined_training_matches_one_device(results, mesh):
  _, single, sharded = results
  variant = mesh.split('@')[0].removesuffix('_circular')
  must_name = ("'layers'", "'router'", "'wo'") if variant.startswith('moe') else ("'layers'",)
  assert_training_matches(single, sharded, f'{variant}@1,1,1', mesh, must_name)


def test_pipelined_checkpoint_restores_on_one_device(results):
  tmp_path, _, _ = results
  restored, state = restore_on_one_device(tmp_path, (1, 2, 4, 1, 1), 'pipe_circular')
  for name in ('attn', 'mlp'):
    for path, leaf in jax.tree_util.tree_flatten_with_path(state['params']['layers'][name])[0]:
      key = f".params['layers']['{name}']{jax.tree_util.keystr(path)}"
      np.testing.assert_array_equal(restored[key], np.asarray(leaf))
