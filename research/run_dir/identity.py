"""A run's identity: a hash of its resolved config; a directory holds the run of one config.

A directory holding another config's run is refused with the fields that differ, so a rerun with
a changed config never trains over, or resumes, someone else's run.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import ml_collections

from research.run_dir.atomic import write_json_atomically
from research.run_dir.layout import CONFIG_FILE


def config_json(config: ml_collections.ConfigDict) -> str:
  """The config as canonical JSON (sorted keys): what is hashed and written to config.json."""
  return json.dumps(config.to_dict(), sort_keys=True, indent=2)


def config_hash(config: ml_collections.ConfigDict) -> str:
  """A short stable identity of a resolved config (12 hex digits)."""
  return hashlib.sha256(config_json(config).encode()).hexdigest()[:12]


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


def claim(workdir, config: ml_collections.ConfigDict) -> None:
  """Create `workdir` for `config`, or check that the run already there has the same config."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / CONFIG_FILE
  if path.exists():
    try:
      old = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not valid JSON ({e}); move the directory aside') from e
    diff = config_diff(old, json.loads(config_json(config)))
    if diff:
      raise ValueError(f'{workdir} holds a run of a different config; use a new --workdir or the '
                       'same config. Differences:\n  ' + '\n  '.join(diff))
  else:
    write_json_atomically(path, json.loads(config_json(config)))
