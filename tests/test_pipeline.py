"""Pipeline parallelism: the schedules compute the plain stack's function and gradients; on 8
fake CPU devices, pipelined AdamW training (circular, next to FSDP) matches single-device
training, and its checkpoint restores bitwise onto one device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.config import base_config
from research.model import pipeline
from research.model.pipeline import Schedule, bubble_fraction, theoretical_bubble
from research.train.validate import validate_config
from tests.test_sharding import (assert_training_matches, restore_on_one_device,
                                 single_and_mesh_runs)

SINGLE = ('pipe@1,1,1',)  # both pipeline variants are this model on one device
# One 8-device run keeps the file short: the circular schedule (strided stages, the loop back to
# stage 0) next to FSDP; GPipe is its R = 1 case, checked against the plain loop above.
MESHES = ('pipe_circular@1,2,4,1,1',)


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


def _pipeline_config(**train):
  c = base_config()
  c.model.update(num_layers=4, scan_layers=True)
  c.train.update(batch_size=8, **train)
  c.mesh.ici = (1, 4, 2, 1, 1)
  return c


@pytest.mark.parametrize('change, field', [
    (lambda c: c.model.update(scan_layers=False), 'model.scan_layers'),
    (lambda c: c.model.update(num_layers=6), 'model.num_layers'),
    (lambda c: c.model.update(num_experts=4), 'model.num_experts'),
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
  assert_training_matches(single, sharded, SINGLE[0], mesh, ("'layers'",))


def test_pipelined_checkpoint_restores_on_one_device(results):
  tmp_path, _, _ = results
  restored, state = restore_on_one_device(tmp_path, (1, 2, 4, 1, 1), 'pipe_circular')
  for name in ('attn', 'mlp'):
    for path, leaf in jax.tree_util.tree_flatten_with_path(state['params']['layers'][name])[0]:
      key = f".params['layers']['{name}']{jax.tree_util.keystr(path)}"
      np.testing.assert_array_equal(restored[key], np.asarray(leaf))
