"""Reading and trimming a run's `metrics.jsonl` (the train loop appends to it)."""

from __future__ import annotations

import json
import math
from typing import Iterator

import numpy as np

from research.run_dir.atomic import write_text_atomically
from research.run_dir.layout import METRICS_FILE
from research.run_dir.paths import as_path


def _lines(run_dir) -> Iterator[tuple[str, dict]]:
  """(line, record) for each complete line; a line cut short by a kill is skipped."""
  for line in (as_path(run_dir) / METRICS_FILE).read_text().splitlines():
    try:
      yield line, json.loads(line)
    except json.JSONDecodeError:
      continue


def metric_records(run_dir) -> list[dict]:
  """Every record of the run's metrics.jsonl, in the order written."""
  return [record for _, record in _lines(run_dir)]


def truncate_metrics_after(run_dir, step: int) -> None:
  """Drop lines past `step`: after a resume or rollback they describe discarded work."""
  if not (as_path(run_dir) / METRICS_FILE).exists():
    return
  kept = [line for line, record in _lines(run_dir) if record.get('step', 0) <= step]
  write_text_atomically(as_path(run_dir) / METRICS_FILE, ''.join(l + '\n' for l in kept))


def read_metrics(run_dir, key: str = 'loss') -> tuple[np.ndarray, np.ndarray]:
  """(tokens, values of `key`) from a run's metrics.jsonl, in step order, one per step.

  Lines without `tokens` (evaluations) get step x the tokens per step of the training lines.
  """
  by_step, per_step = {}, None
  for record in metric_records(run_dir):
    step = record.get('step')
    if not isinstance(step, (int, float)) or step <= 0:
      continue
    if 'tokens' in record and per_step is None:
      per_step = float(record['tokens']) / step
    if key in record:
      by_step[step] = (record.get('tokens'), float(record[key]))
  steps = sorted(by_step)
  tokens = [by_step[s][0] if by_step[s][0] is not None else
            (s * per_step if per_step else math.nan) for s in steps]
  values = [by_step[s][1] for s in steps]
  return np.array(tokens, dtype=np.float64), np.array(values, dtype=np.float64)
