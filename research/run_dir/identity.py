"""A run's identity: what the experiment is, hashed; a directory holds the run of one experiment.

The identity covers what defines the experiment (model, data, objective, optimiser and schedule,
steps, seeds) and leaves out how it is executed (`EXECUTION_FIELDS`: the mesh and the cluster,
kernels and recomputation whose results agree within float tolerance, logging, evaluation and
checkpoint cadence). A run may resume with different execution fields (a preempted job coming back
on a slice of another shape); a directory holding another experiment is refused with the fields
that differ. A field missing from an older run's config.json counts as its default, so run
directories written before a field existed stay recognised.
"""

from __future__ import annotations

import copy
import hashlib
import json

import ml_collections

from research.run_dir.atomic import read_json, write_json_atomically
from research.run_dir.layout import CONFIG_FILE
from research.run_dir.paths import as_path

# Dotted config paths (a whole section, or one field) that say how a run executes, not what it
# computes.
EXECUTION_FIELDS = (
    'mesh', 'distributed',  # devices and hosts: restoring onto any mesh is exact
    'model.attention_impl', 'model.remat',  # kernels and recomputation: equal within tolerance
    'model.moe_grouped_matmul',  # likewise
    'train.loss_chunk_len', 'train.grad_accum_steps',  # fused loss, micro-batches: likewise
    'train.log_every', 'train.eval_every', 'train.checkpoint_every', 'train.keep_checkpoints',
    'train.verify_checkpoints', 'train.run_lock', 'train.save_steps',  # cadence, bookkeeping
    'train.lease_ttl_s', 'train.wandb_project', 'train.wandb_entity', 'train.wandb_group',
    'train.wandb_name',
    'train.init_from.run_dir',  # where the parent lives; its run_id and step are the experiment
    'data.data_dir',  # where downloads and caches live
)


def as_dict(config) -> dict:
  """A ConfigDict or a plain dict (a config.json) as a plain JSON-like dict."""
  tree = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
  return json.loads(json.dumps(tree, sort_keys=True))


def config_json(config) -> str:
  """The whole config as canonical JSON (sorted keys): what config.json holds."""
  return json.dumps(as_dict(config), sort_keys=True, indent=2)


def _split(tree: dict, paths=EXECUTION_FIELDS) -> tuple[dict, dict]:
  """(experiment part, execution part) of a config tree."""
  experiment, execution = copy.deepcopy(tree), {}
  for path in paths:
    *parents, leaf = path.split('.')
    node, out = experiment, execution
    for name in parents:
      if not isinstance(node.get(name), dict):
        break
      node, out = node[name], out.setdefault(name, {})
    else:
      if leaf in node:
        out[leaf] = node.pop(leaf)
  return experiment, execution


def experiment_fields(config) -> dict:
  """The config without its execution fields: what the identity hashes."""
  return _split(as_dict(config))[0]


def config_hash(config) -> str:
  """A short stable identity of the experiment a config describes (12 hex digits)."""
  text = json.dumps(experiment_fields(config), sort_keys=True, indent=2)
  return hashlib.sha256(text.encode()).hexdigest()[:12]


def with_defaults(stored: dict, defaults: dict | None) -> dict:
  """`stored` with every field it lacks that `defaults` has (an older run's config.json read with
  today's defaults for fields added since)."""
  if not defaults:
    return stored
  out = dict(stored)
  for key, value in defaults.items():
    if key not in out:
      out[key] = copy.deepcopy(value)
    elif isinstance(out[key], dict) and isinstance(value, dict):
      out[key] = with_defaults(out[key], value)
  return out


def config_diff(old: dict, new: dict, prefix: str = '') -> list[str]:
  """'field: old in the directory, new now' for every leaf that differs, dotted names."""
  out = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key, '<missing>'), new.get(key, '<missing>')
    if isinstance(a, dict) and isinstance(b, dict):
      out += config_diff(a, b, f'{prefix}{key}.')
    elif a != b:
      out.append(f'{prefix}{key}: {a!r} in the directory, {b!r} now')
  return out


def _comparable(stored: dict, current: dict, defaults: dict | None) -> dict:
  """The stored config filled with defaults, without fields today's config no longer has."""
  stored = with_defaults(stored, defaults)

  def prune(a, b):
    return {k: prune(v, b[k]) if isinstance(v, dict) and isinstance(b.get(k), dict) else v
            for k, v in a.items() if k in b}
  return prune(stored, current)


def experiment_diff(stored: dict, config, defaults: dict | None = None) -> list[str]:
  """The experiment fields in which a stored config.json differs from `config`."""
  current = as_dict(config)
  return config_diff(experiment_fields(_comparable(stored, current, defaults)),
                     experiment_fields(current))


def same_experiment(stored: dict, config, defaults: dict | None = None) -> bool:
  return not experiment_diff(stored, config, defaults)


def claim(workdir, config, defaults: dict | None = None) -> list[str]:
  """Create `workdir` for `config`, or check that the run already there is the same experiment.

  Returns the execution fields that changed since the directory was written (empty for a new
  run); config.json is then rewritten with today's config. `defaults` (the config defaults as a
  dict) fill fields an older config.json lacks. Raises ValueError listing the experiment fields
  that differ.
  """
  workdir = as_path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / CONFIG_FILE
  current = as_dict(config)
  if not path.exists():
    write_json_atomically(path, current)
    return []
  stored = read_json(path)
  if stored is None:
    raise ValueError(f'{path}: not valid JSON; move the directory aside')
  diff = experiment_diff(stored, current, defaults)
  if diff:
    raise ValueError(f'{workdir} holds a run of a different config; use a new --workdir or the '
                     'same config. Differences:\n  ' + '\n  '.join(diff))
  changed = config_diff(_split(_comparable(stored, current, defaults))[1], _split(current)[1])
  if stored != current:
    write_json_atomically(path, current)
  return changed
