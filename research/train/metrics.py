"""Per-step metrics to `metrics.jsonl` and TensorBoard, written by process 0 only."""

from __future__ import annotations

import json
import pathlib

import jax

from research import run_dir


def truncate_after(workdir, step: int) -> None:
  """Process 0 drops logged lines past `step`: after a resume or rollback they describe
  discarded work."""
  if jax.process_index() == 0:
    run_dir.truncate_metrics_after(workdir, step)


class MetricsWriter:
  """Appends one JSON object per record and mirrors scalars to TensorBoard."""

  def __init__(self, workdir, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = pathlib.Path(workdir) / run_dir.METRICS_FILE
    self.tb = None
    if self.enabled and tensorboard:
      from tensorboardX import SummaryWriter  # imported lazily: only process 0 writes
      self.tb = SummaryWriter(str(pathlib.Path(workdir) / run_dir.TENSORBOARD_DIR))

  def write(self, record: dict) -> None:
    if not self.enabled:
      return
    with open(self.path, 'a') as f:
      f.write(json.dumps(record, sort_keys=True) + '\n')
    if self.tb is not None:
      for key, value in record.items():
        if key != 'step' and isinstance(value, (int, float)):
          self.tb.add_scalar(key, value, record['step'])

  def close(self) -> None:
    if self.tb is not None:
      self.tb.flush()
      self.tb.close()
