"""Starting a run from another run's checkpoint (`train.init_from`): a cooldown branch of a
constant-learning-rate run (Hagele et al. 2024) continues its parent's params, optimizer state and
data position at one step, then trains its own schedule.

The parent must be a run directory of the same experiment: the same model, data and optimizer,
differing only in the schedule fields below and in how each executes. Each branch is its own run directory
(its config names the parent, so its identity does too); the loop uses `train.init_from` only while
the branch's directory has no checkpoint of its own, so a branch resumes like any run.
"""

from __future__ import annotations

import ml_collections

from research import run_dir as run_dir_lib
from research.train import checkpoint as ckpt

# Train fields a branch may set apart from its parent: its schedule and where it starts. (How a
# run executes -- mesh, cadence, keep count, save_steps -- is out of the experiment already.)
BRANCH_FIELDS = ('schedule', 'num_steps', 'decay_fraction', 'decay_shape', 'min_lr_ratio',
                 'init_from')


def _fail(init, why: str):
  raise ValueError(f'train.init_from.run_dir={init.run_dir!r}: {why}')


def _experiment(config: dict) -> dict:
  """The fields a branch shares with its parent: its experiment fields less its schedule."""
  out = {k: v for k, v in run_dir_lib.experiment_fields(config).items() if k != 'sweep'}
  out['train'] = {k: v for k, v in out.get('train', {}).items() if k not in BRANCH_FIELDS}
  return out


def check_parent(config: ml_collections.ConfigDict):
  """The parent's run directory, or a ValueError naming train.init_from if it is missing, holds
  another run or another experiment, or never trains to the branch's step."""
  init = config.train.init_from
  parent = run_dir_lib.as_path(init.run_dir)
  parent_config = run_dir_lib.read_config(parent)
  if parent_config is None:
    _fail(init, 'no run directory there (no config.json); train the parent first')
  if init.run_id and parent.name != init.run_id:
    _fail(init, f'the directory is run {parent.name!r}, not the parent '
          f'train.init_from.run_id={init.run_id!r}')
  ours = run_dir_lib.config_diff(_experiment(parent_config),
                                 _experiment(config.to_dict()))
  if ours:
    _fail(init, 'the parent is a run of another config (only the schedule and bookkeeping may '
          'differ):\n  ' + '\n  '.join(d.replace('in the directory', 'in the parent')
                                     for d in ours))
  parent_steps = parent_config.get('train', {}).get('num_steps', 0)
  if init.step > parent_steps:
    raise ValueError(f'train.init_from.step={init.step}: the parent run trains only '
                     f'{parent_steps} steps')
  return parent


def restore_parent(config: ml_collections.ConfigDict, abstract_state, data_iterator):
  """The parent's train state at `train.init_from.step` (into `abstract_state`'s shapes and
  shardings), with `data_iterator` set to the parent's position there."""
  parent = check_parent(config)
  step = config.train.init_from.step
  if not (parent / run_dir_lib.CHECKPOINT_DIR).is_dir():
    raise ValueError(f'train.init_from.step={step}: the parent {parent} has no checkpoints yet')
  manager = ckpt.make_manager(parent, keep=None, create=False)
  try:
    available = sorted(manager.all_steps())
    if step not in available:
      raise ValueError(f'train.init_from.step={step}: the parent {parent} has no checkpoint '
                       f'there (it has {available or "none"}); it has not trained that far yet, '
                       'or did not keep the step (list it in the parent\'s train.save_steps)')
    why = ckpt.verify(parent, step)
    if why:
      raise ValueError(f'train.init_from.step={step}: the parent\'s checkpoint there fails its '
                       f'checksums ({why}); the parent must retrain it')
    state, _ = ckpt.restore(manager, step, abstract_state, data_iterator)
  finally:
    manager.close()
  return state
