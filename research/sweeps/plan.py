"""A sweep's plan: from a sweep file's `get_sweep()` to one run directory per run.

`get_sweep()` returns (label, config) pairs (`generators.Entry`); each becomes a `Run` whose
directory `DIR/<run_id>` is named by the hash of its resolved config and holds `config.json` and
a `run_config.py` that the train CLI loads.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import ml_collections

from research import run_dir as run_dir_lib
from research.config import base_config, load_python_file

RUN_CONFIG_PY = (
    f'''"""Written by experiments.sweep: this run's resolved config, from config.json."""

import json
import pathlib

import ml_collections


def get_config():
  path = pathlib.Path(__file__).with_name({run_dir_lib.CONFIG_FILE!r})
  return ml_collections.ConfigDict(json.loads(path.read_text()))
''')


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of a sweep, resolved: its identity, label, full config and directory."""
  run_id: str
  label: str
  config: ml_collections.ConfigDict
  run_dir: run_dir_lib.AnyPath  # local, or a URI such as gs://bucket/sweep/<run_id>


def load_sweep(path) -> list:
  """`get_sweep()` of a sweep file (`configs/sweeps/*.py`)."""
  file = pathlib.Path(path)
  if not file.is_file():
    raise ValueError(f'--sweep={path}: no such file')
  module = load_python_file(file)
  if not hasattr(module, 'get_sweep'):
    raise ValueError(f'--sweep={path}: defines no get_sweep()')
  return module.get_sweep()


def resolve_runs(sweep, workdir, sweep_name: str = 'sweep') -> list[Run]:
  """(label, config) pairs -> Runs, each config given a `sweep` section (label at least).

  The run id hashes the experiment fields of the config, sweep section included; two runs that
  differ only there would train the same model twice and are refused. A run whose `sweep.parent`
  names another run's label (a cooldown branch) gets that run's directory and id in
  `train.init_from`, so its own id depends on its parent's; parents are resolved first. A run
  directory already in `workdir` that holds the same experiment under another name (written by an
  earlier version, whose ids also hashed how runs executed) is that run's directory: finished
  sweeps stay finished.
  """
  if not isinstance(sweep, (list, tuple)) or not sweep:
    raise ValueError('get_sweep() must return a non-empty list of (name, config) pairs')
  for i, entry in enumerate(sweep):
    if (not isinstance(entry, (list, tuple)) or len(entry) != 2 or not isinstance(entry[0], str)
        or not isinstance(entry[1], ml_collections.ConfigDict)):
      raise ValueError(f'get_sweep()[{i}]: expected a (name, ConfigDict) pair, got {entry!r:.200}')
  parent_of = {label: config.get('sweep', {}).get('parent') for label, config in sweep}
  labels = set(parent_of)
  for label, parent in parent_of.items():
    if parent and parent not in labels:
      raise ValueError(f'run {label!r}: its sweep.parent {parent!r} is not a run of this sweep')
    if parent and parent_of.get(parent):
      raise ValueError(f'run {label!r}: its parent {parent!r} is itself a branch; branch from '
                       'runs trained from scratch')
  by_label, by_training = {}, {}
  order = sorted(range(len(sweep)), key=lambda i: bool(parent_of[sweep[i][0]]))
  for i in order:
    label, config = sweep[i]
    config = config.copy_and_resolve_references()
    with config.unlocked():
      if 'sweep' not in config:
        config.sweep = ml_collections.ConfigDict({'name': sweep_name, 'kind': '', 'budget': None})
      config.sweep.label = label
    if parent_of[label]:
      parent = by_label[parent_of[label]]
      config.train.init_from.run_dir = str(parent.run_dir)
      config.train.init_from.run_id = parent.run_id
    training = run_dir_lib.experiment_fields(config)
    training.pop('sweep')
    training = json.dumps(training, sort_keys=True)
    if training in by_training:
      raise ValueError(f'runs {by_training[training]!r} and {label!r} have the same config apart '
                       'from their sweep labels; a sweep must not repeat a run')
    by_training[training] = label
    run_id = run_dir_lib.config_hash(config)
    by_label[label] = Run(run_id, label, config, run_dir_lib.as_path(workdir) / run_id)
  runs = [by_label[label] for label, _ in sweep]
  return _existing_directories(runs, run_dir_lib.as_path(workdir))


def _existing_directories(runs: list[Run], workdir) -> list[Run]:
  """Each run whose directory is missing, pointed at a directory of `workdir` holding its
  experiment under another name, if there is one."""
  missing = [r for r in runs if not r.run_dir.is_dir()]
  if not missing or not workdir.is_dir():
    return runs
  defaults = base_config().to_dict()
  claimed = {r.run_dir.name for r in runs}
  stored = {}
  for path in sorted(workdir.iterdir()):
    config = run_dir_lib.read_config(path) if path.is_dir() and path.name not in claimed else None
    if config is not None and not path.name.count('.'):  # '<id>.failed-<n>' was moved aside
      stored[path] = config
  found = {}
  for run in missing:
    for path, config in stored.items():
      if path not in found.values() and run_dir_lib.same_experiment(config, run.config, defaults):
        found[run.run_id] = path
        break
  return [dataclasses.replace(r, run_id=found[r.run_id].name, run_dir=found[r.run_id])
          if r.run_id in found else r for r in runs]


def write_run_files(run: Run) -> None:
  """config.json (what the train loop checks its directory against) and the run_config.py loader.

  A finished run's files are left as they are.
  """
  if run_dir_lib.read_summary(run.run_dir) is not None:
    return
  run.run_dir.mkdir(parents=True, exist_ok=True)
  config = json.loads(run_dir_lib.config_json(run.config))
  path = run.run_dir / run_dir_lib.CONFIG_FILE
  if run_dir_lib.read_json(path) != config:
    run_dir_lib.write_json_atomically(path, config)
  loader = run.run_dir / run_dir_lib.RUN_CONFIG_FILE
  if not loader.exists() or loader.read_text() != RUN_CONFIG_PY:
    run_dir_lib.write_text_atomically(loader, RUN_CONFIG_PY)
