"""Train the same tiny config on several meshes in one process; save losses and final params.

Run as `python -m tests.mesh_runs OUT.npz CORPUS CACHE WORKROOT RUN [RUN ...]` with each RUN an
ICI like `2,2,2` (the dense model) or `VARIANT@ICI` like `moe@1,1,1,8,1` (a model of `VARIANTS`);
the device count comes from XLA_FLAGS. Used by the sharding tests.
"""

import json
import pathlib
import sys

import jax
import numpy as np

from research.train.checkpoint import load_state
from research.train.loop import train
from tests.train_helpers import tiny_config

NUM_STEPS = 6
VARIANTS = {  # model and train overrides of the dense tiny model
    'dense': {},
    'moe': dict(model=dict(num_experts=8, experts_per_token=2, mlp='swiglu')),
    'moe_capacity': dict(model=dict(num_experts=8, experts_per_token=2,
                                    expert_capacity_factor=1.0, num_shared_experts=1,
                                    moe_d_ff=16, scan_layers=True)),
    # Pipelines (research/model/pipeline.py) train 4 steps; the schedule only acts on a mesh
    # with a 'stage' axis above 1, so on one device both are the plain scanned model.
    'pipe': dict(model=dict(num_layers=4, scan_layers=True),
                 train=dict(num_steps=4, checkpoint_every=4, eval_every=4,
                            pipeline_microbatches=2)),
    'pipe_circular': dict(model=dict(num_layers=4, scan_layers=True),
                          train=dict(num_steps=4, checkpoint_every=4, eval_every=4,
                                     pipeline_schedule='circular', pipeline_repeats=2,
                                     pipeline_microbatches=2)),
    # MoE layers pipelined: their aux losses leave the stages (weights raised so they matter).
    'moe_pipe': dict(model=dict(num_layers=4, scan_layers=True, num_experts=4,
                                experts_per_token=2, load_balance_loss_weight=0.1,
                                router_z_loss_weight=0.01),
                     train=dict(num_steps=4, checkpoint_every=4, eval_every=4,
                                pipeline_microbatches=2)),
    'moe_pipe_circular': dict(model=dict(num_layers=4, scan_layers=True, num_experts=4,
                                         experts_per_token=2, load_balance_loss_weight=0.1,
                                         router_z_loss_weight=0.01),
                              train=dict(num_steps=4, checkpoint_every=4, eval_every=4,
                                         pipeline_schedule='circular', pipeline_repeats=2,
                                         pipeline_microbatches=2)),
}


def mesh_config(corpus, cache, ici, variant='dense'):
  c = tiny_config(corpus, cache, num_steps=NUM_STEPS, checkpoint_every=NUM_STEPS,
                  eval_every=NUM_STEPS, warmup_steps=2)
  c.model.update(num_heads=4, num_kv_heads=4)
  for section, overrides in VARIANTS[variant].items():
    c[section].update(overrides)
  c.mesh.ici = ici
  return c


def main(out, corpus, cache, workroot, *runs):
  results = {}
  for text in runs:
    variant, _, mesh = text.rpartition('@')
    ici = tuple(int(x) for x in mesh.split(','))
    workdir = pathlib.Path(workroot) / text.replace(',', 'x').replace('@', '_')
    train(mesh_config(corpus, cache, ici, variant or 'dense'), workdir, log=lambda *_: None)
    records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text()
               .splitlines() if '"loss"' in line]
    _, state = load_state(workdir)
    results[f'{text}/losses'] = np.asarray([r['loss'] for r in records])
    # The differentiated loss: with MoE layers, the loss plus their weighted aux losses.
    results[f'{text}/total_losses'] = np.asarray([r['total_loss'] for r in records])
    for path, leaf in jax.tree_util.tree_flatten_with_path(state['params'])[0]:
      results[f'{text}/{jax.tree_util.keystr(path)}'] = np.asarray(leaf)
  np.savez(out, **results)


if __name__ == '__main__':
  main(*sys.argv[1:])
