"""Orbax checkpoints holding the train state, the grain iterator state and loop bookkeeping.

Saves are asynchronous and atomic (written to a temporary directory, renamed on commit), so a
process killed mid-save leaves the previous checkpoint as the latest one. Soon after a save has
committed, the sha256 of each of its files is recorded (`checkpoint_checksums/<step>.json`);
`restore_newest_good` checks them before restoring, and a checkpoint that fails the check, cannot
be read or holds non-finite parameters is moved aside to `rejected_checkpoints/` (never deleted)
and the next older one is tried.

The run directory may be a URI (gs://bucket/run): Orbax then commits a checkpoint by writing
`commit_success.txt` into it last instead of renaming it, and moving a bad one aside copies its
objects (see `run_dir.move`).
"""

from __future__ import annotations

import concurrent.futures
import hashlib

import grain
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from research import run_dir as run_dir_lib


class NoGoodCheckpoint(Exception):
  """Every checkpoint of the run was rejected (or there is none)."""


def _step_dir(workdir, step: int):
  return run_dir_lib.absolute(workdir) / run_dir_lib.CHECKPOINT_DIR / str(step)


def _checksum_path(workdir, step: int):
  return run_dir_lib.absolute(workdir) / run_dir_lib.CHECKSUMS_DIR / f'{step}.json'


def file_checksums(directory) -> dict[str, str]:
  """{path relative to `directory`: sha256} of every file under it."""
  directory, out = run_dir_lib.as_path(directory), {}
  for path in run_dir_lib.files_under(directory):
    digest = hashlib.sha256()
    with path.open('rb') as f:
      for block in iter(lambda: f.read(1 << 20), b''):
        digest.update(block)
    out[str(path.relative_to(directory))] = digest.hexdigest()
  return out


def record_checksums(workdir, step: int) -> None:
  """Writes the checksums of committed checkpoint `step` (process 0, after the commit)."""
  path = _checksum_path(workdir, step)
  path.parent.mkdir(parents=True, exist_ok=True)
  run_dir_lib.write_json_atomically(path, {'step': step, 'sha256': file_checksums(
      _step_dir(workdir, step))})


def verify(workdir, step: int) -> str | None:
  """Why checkpoint `step` fails its checksums ('file x changed', 'file x missing', ...), or None
  if it passes; None also for a checkpoint written before checksums were recorded."""
  recorded = run_dir_lib.read_json(_checksum_path(workdir, step))
  if recorded is None:
    return None
  now = file_checksums(_step_dir(workdir, step))
  for name, digest in recorded['sha256'].items():
    if name not in now:
      return f'file {name} is missing'
    if now[name] != digest:
      return f'file {name} does not match its checksum'
  extra = sorted(set(now) - set(recorded['sha256']))
  return f'unexpected file {extra[0]}' if extra else None


def move_aside(workdir, step: int, reason: str):
  """Moves checkpoint `step` (and its checksums) to rejected_checkpoints/<step>[-n]/, with the
  reason in `reason.txt`; returns where it went."""
  rejected = run_dir_lib.absolute(workdir) / run_dir_lib.REJECTED_DIR
  rejected.mkdir(parents=True, exist_ok=True)
  target, n = rejected / str(step), 1
  while target.exists():
    target, n = rejected / f'{step}-{n}', n + 1
  run_dir_lib.move(_step_dir(workdir, step), target)
  checksums = _checksum_path(workdir, step)
  if checksums.exists():
    run_dir_lib.move(checksums, target / 'checksums.json')
  (target / 'reason.txt').write_text(reason + '\n')
  return target


def record_new_checksums(workdir) -> None:
  """Checksums for every committed checkpoint that has none yet; drops those of deleted ones.

  Committed checkpoints are the ones Orbax calls finalized: on a local disk the directories named
  by their step (Orbax writes into a temporary name and renames it on commit), on GCS those
  holding `commit_success.txt`.
  """
  root = run_dir_lib.absolute(workdir)
  steps = set(ocp.path.step.checkpoint_steps(root / run_dir_lib.CHECKPOINT_DIR))
  for step in sorted(steps):
    if not _checksum_path(workdir, step).exists():
      record_checksums(workdir, step)
  for path in (root / run_dir_lib.CHECKSUMS_DIR).glob('*.json'):
    if path.stem.isdigit() and int(path.stem) not in steps:
      path.unlink()  # Orbax deleted that checkpoint (keep_checkpoints)


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
  handlers = {'state': ocp.StandardCheckpointHandler(),
              'data': grain.checkpoint.CheckpointHandler(), 'meta': ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(run_dir_lib.absolute(workdir) / run_dir_lib.CHECKPOINT_DIR,
                               options=options, item_handlers=handlers)


class ChecksumRecorder:
  """Records the checksums of each checkpoint soon after it commits, off the training thread.

  The loop calls `saved()` after starting a save, `poll()` once per step (cheap: it only asks
  Orbax whether the save is still in flight) and `wait()` before reading checkpoints or exiting.
  A process killed between a commit and its checksums leaves that checkpoint unverified: it is
  then accepted if it restores with finite parameters. Only process 0 records.
  """

  def __init__(self, workdir, manager, enabled: bool = True):
    self.workdir, self.manager = workdir, manager
    self.enabled = enabled and jax.process_index() == 0
    self._pool = concurrent.futures.ThreadPoolExecutor(1) if self.enabled else None
    self._pending, self._future = False, None

  def saved(self) -> None:
    self._pending = self.enabled

  def poll(self) -> None:
    if self._pending and not self.manager.is_saving_in_progress():
      self._pending = False
      self._future = self._pool.submit(record_new_checksums, self.workdir)

  def wait(self) -> None:
    if self._pending:
      self.manager.wait_until_finished()
      self.poll()
    if self._future is not None:
      self._future.result()
      self._future = None


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


def all_finite(tree) -> bool:
  """True if every floating-point leaf of `tree` is finite."""
  return all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(tree)
             if jnp.issubdtype(x.dtype, jnp.floating))


def restore_newest_good(manager, workdir, abstract_state, data_iterator, log=print,
                        below: int | None = None):
  """(step, state, meta) of the newest checkpoint (below step `below`, if given) that passes its
  checksums, restores, and holds finite parameters; the ones that fail are moved aside, each
  named in the log. Raises NoGoodCheckpoint when none is left."""
  manager.wait_until_finished()
  for step in sorted(manager.all_steps(), reverse=True):
    if below is not None and step >= below:
      continue
    why = verify(workdir, step)
    state = meta = None
    if why is None:
      try:
        state, meta = restore(manager, step, abstract_state, data_iterator)
      except Exception as e:  # a damaged checkpoint raises whatever its reader meets
        why = f'it cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]})'
    if why is None and not all_finite(state.params):
      why = 'its parameters are not finite'
    if why is None:
      return step, state, meta
    # Every process reaches the same verdict (the same files, a collective finiteness check);
    # process 0 moves the checkpoint, the others wait for it before looking again.
    if jax.process_index() == 0:
      target = move_aside(workdir, step, why)
      log(f'checkpoint at step {step} rejected: {why}; moved to {target}')
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'checkpoint {step} rejected')
    manager.reload()
  raise NoGoodCheckpoint(f'{workdir}: no checkpoint passed verification')


def restore_at_start(manager, workdir, abstract_state, data_iterator, checksums, log=print):
  """At a run's start: (step, state, meta) of the newest good checkpoint (`restore_newest_good`),
  or None when there is none or none passes (the iterator is then back where it was). Either way
  committed checkpoints without checksums get them: those of a run killed just after a commit."""
  if not manager.all_steps():
    return None
  before = data_iterator.get_state()
  try:
    restored = restore_newest_good(manager, workdir, abstract_state, data_iterator, log)
    log(f'resumed from the checkpoint at step {restored[0]}')
  except NoGoodCheckpoint:
    data_iterator.set_state(before)  # a failed restore may have moved it
    restored = None
    log('no checkpoint passed verification: training from the start')
  if checksums.enabled:
    record_new_checksums(workdir)
  return restored


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
