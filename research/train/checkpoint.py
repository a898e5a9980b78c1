"""Orbax checkpoints holding the train state, the grain iterator state and loop bookkeeping.

Saves are asynchronous and atomic (written to a temporary directory, renamed on commit), so a
process killed mid-save leaves the previous checkpoint as the latest one.
"""

from __future__ import annotations

import pathlib

import grain
import jax
import orbax.checkpoint as ocp

from research import run_dir


def make_manager(workdir, keep: int | None, preserve=(), create: bool = True
                 ) -> ocp.CheckpointManager:
  """A manager over `workdir/checkpoints` keeping the newest `keep` steps (None: all), and the
  steps in `preserve` for good (the starts of cooldown branches)."""
  policy = {'max_to_keep': keep}
  if preserve and keep is not None:
    policies = ocp.checkpoint_managers
    policy = {'preservation_policy': policies.AnyPreservationPolicy(
        [policies.LatestN(keep), policies.CustomSteps(list(preserve))])}
  options = ocp.CheckpointManagerOptions(create=create, cleanup_tmp_directories=True,
                                         enable_async_checkpointing=True, **policy)
  handlers = {'state': ocp.StandardCheckpointHandler(), 'data': grain.checkpoint.CheckpointHandler(),
              'meta': ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(pathlib.Path(workdir).absolute() / run_dir.CHECKPOINT_DIR, options=options,
                               item_handlers=handlers)


def save(manager, step: int, state, data_iterator, meta: dict) -> None:
  """Starts an async save of step `step`; `manager.wait_until_finished()` blocks until committed."""
  manager.save(step, force=True, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator),
      meta=ocp.args.JsonSave(meta)))


def restore(manager, step: int, abstract_state, data_iterator):
  """Restores step `step` into the shapes and shardings of `abstract_state`; sets the iterator."""
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state),
      data=grain.checkpoint.CheckpointRestore(data_iterator), meta=ocp.args.JsonRestore()))
  return restored['state'], restored['meta']


def abstract_like(state):
  """ShapeDtypeStructs (with shardings) of a state: the restore target without a second copy."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def load_state(workdir, step: int | None = None) -> tuple[int, dict]:
  """(step, state as nested dicts of numpy arrays) from a run directory, latest step by default."""
  manager = make_manager(workdir, keep=None)
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'{workdir}: no committed checkpoint')
  # Read onto this process's first device, whatever mesh the checkpoint was written from.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        manager.item_metadata(step)['state'].tree)
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target)))
  manager.close()
  return step, restored['state']
