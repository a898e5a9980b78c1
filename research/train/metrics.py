"""Per-step metrics to `metrics.jsonl`, TensorBoard and (optionally) W&B, by process 0 only.

On a local run directory each record is appended at once. An object store has no append: the
writer keeps the file's lines and uploads the whole file (one atomic object write) at `flush()`,
which the loop calls at every checkpoint and at the end, and at most every `FLUSH_EVERY_S`
otherwise; TensorBoard events are written to a local staging directory and uploaded likewise.
A process killed between flushes loses only lines past its last checkpoint, which a resume
discards and logs again anyway.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile
import time

import jax

from research import run_dir

FLUSH_EVERY_S = 30.0  # an object-store run directory's metrics are uploaded at least this often


def truncate_after(workdir, step: int) -> None:
  """Process 0 drops logged lines past `step`: after a resume or rollback they describe
  discarded work."""
  if jax.process_index() == 0:
    run_dir.truncate_metrics_after(workdir, step)


class MetricsWriter:
  """Writes one JSON object per record and mirrors scalars to TensorBoard and `trackers`.

  `trackers`: objects with `log(record)` and `close()` (the W&B logger), process 0's only.
  """

  def __init__(self, workdir, tensorboard: bool = True, trackers=()):
    self.enabled = jax.process_index() == 0
    self.workdir = run_dir.as_path(workdir)
    self.path = self.workdir / run_dir.METRICS_FILE
    self.local = run_dir.is_local(workdir)
    self.trackers = list(trackers) if self.enabled else []
    self.tb = None
    self._lines, self._staging, self._flushed = None, None, time.monotonic()
    if self.enabled and not self.local:
      self._lines = self.path.read_text().splitlines(True) if self.path.exists() else []
    if self.enabled and tensorboard:
      from tensorboardX import SummaryWriter  # imported lazily: only process 0 writes
      logdir = self.workdir / run_dir.TENSORBOARD_DIR
      if not self.local:
        self._staging = pathlib.Path(tempfile.mkdtemp(prefix='research-tensorboard-'))
        logdir = self._staging
      self.tb = SummaryWriter(str(logdir))

  def write(self, record: dict) -> None:
    if not self.enabled:
      return
    line = json.dumps(record, sort_keys=True) + '\n'
    if self.local:
      with open(self.path, 'a') as f:
        f.write(line)
    else:
      self._lines.append(line)
    if self.tb is not None:
      for key, value in record.items():
        if key != 'step' and isinstance(value, (int, float)):
          self.tb.add_scalar(key, value, record['step'])
    for tracker in self.trackers:
      tracker.log(record)
    if not self.local and time.monotonic() - self._flushed > FLUSH_EVERY_S:
      self.flush()

  def truncate_after(self, step: int) -> None:
    """Drops the lines past `step` (a rollback discarded that work)."""
    if not self.enabled:
      return
    self.flush()
    run_dir.truncate_metrics_after(self.workdir, step)
    if not self.local:
      self._lines = self.path.read_text().splitlines(True)

  def flush(self) -> None:
    """Everything written so far is in the run directory (a no-op locally: lines are appended)."""
    if not self.enabled or self.local:
      return
    run_dir.write_text_atomically(self.path, ''.join(self._lines))
    if self.tb is not None:
      self.tb.flush()
      for event_file in sorted(self._staging.iterdir()):
        run_dir.write_atomically(self.workdir / run_dir.TENSORBOARD_DIR / event_file.name,
                                 lambda tmp: shutil.copyfile(event_file, tmp))
    self._flushed = time.monotonic()

  def close(self) -> None:
    self.flush()
    if self.tb is not None:
      self.tb.flush()
      self.tb.close()
      self.tb = None
    if self._staging is not None:
      shutil.rmtree(self._staging, ignore_errors=True)
      self._staging = None
    for tracker in self.trackers:
      tracker.close()
    self.trackers = []
