"""An optional Weights & Biases logger beside metrics.jsonl and TensorBoard (`train.wandb_project`).

Every record the loop writes to metrics.jsonl is logged with its training step as the x-axis
(`step`, declared with `define_metric`), so records logged again after a resume or a rollback are
kept, not dropped: the last value per step is what metrics.jsonl holds. The W&B run's id is
derived from the run's identity and directory, so a resumed run continues the same W&B run.
Names and groups come from the config: `train.wandb_name` or the sweep's label, else the run
directory's name; `train.wandb_group` or the sweep's name. `WANDB_MODE=offline` keeps the logs
on disk (`wandb sync` uploads them later).
"""

from __future__ import annotations

import hashlib
import json
import os

import ml_collections

from research import run_dir


def wandb_settings(config: ml_collections.ConfigDict, workdir) -> dict:
  """The keyword arguments of `wandb.init` for a run (plain data; tested without W&B)."""
  t, sweep = config.train, config.get('sweep') or {}
  workdir = run_dir.absolute(workdir)
  identity = f'{run_dir.config_hash(config)}|{workdir}'
  settings = {
      'project': t.wandb_project,
      'entity': t.get('wandb_entity') or None,
      'name': t.get('wandb_name') or sweep.get('label') or workdir.name,
      'group': t.get('wandb_group') or sweep.get('name') or None,
      'id': hashlib.sha256(identity.encode()).hexdigest()[:16],
      'resume': 'allow',
      'config': json.loads(run_dir.config_json(config)),
  }
  if run_dir.is_local(workdir):
    settings['dir'] = str(workdir)  # its files in the run directory: WORKDIR/wandb/
  return settings


class WandbLogger:
  """Logs each record's numbers to one W&B run; `close()` finishes it."""

  def __init__(self, config: ml_collections.ConfigDict, workdir):
    try:
      import wandb
    except ImportError as e:
      raise ValueError(f'train.wandb_project={config.train.wandb_project!r}: needs the wandb '
                       "package (pip install -e '.[wandb]')") from e
    settings = wandb_settings(config, workdir)
    if 'dir' in settings:
      os.makedirs(settings['dir'], exist_ok=True)
    self.run = wandb.init(**settings)
    self.run.define_metric('step')
    self.run.define_metric('*', step_metric='step')

  def log(self, record: dict) -> None:
    values = {k: v for k, v in record.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if 'step' in values and len(values) > 1:
      self.run.log(values)

  def close(self) -> None:
    self.run.finish()


def trackers(config: ml_collections.ConfigDict, workdir) -> list:
  """The loggers the config asks for beside metrics.jsonl: W&B if `train.wandb_project`."""
  if not config.train.get('wandb_project'):
    return []
  return [WandbLogger(config, workdir)]
