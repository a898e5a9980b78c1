"""The W&B logger in offline mode: the run's offline history holds the same numbers as
metrics.jsonl, read back from the `.wandb` file W&B writes (no mock, no network)."""

import json
import re
import struct

import numpy as np
import pytest

from research import run_dir
from research.config import base_config
from research.train import metrics as metrics_lib
from research.train import wandb_logger

_HEADER = 7  # ':W&B' + magic (2 bytes) + version; each record: crc (4), length (2), type (1)
_BLOCK = 32768  # the LevelDB log format W&B's transaction log uses
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def offline_history(wandb_file) -> list[dict]:
  """Every history row of a `.wandb` transaction log, as {key: value}."""
  import wandb
  from wandb.proto import wandb_internal_pb2
  wandb.teardown()  # the W&B service flushes the log and exits: the file is complete
  data = wandb_file.read_bytes()
  assert data[:4] == b':W&B'
  rows, pending, offset = [], b'', _HEADER
  while offset + 7 <= len(data):
    if _BLOCK - offset % _BLOCK < 7:  # a block's tail too short for a header is padding
      offset += _BLOCK - offset % _BLOCK
      continue
    _, length, kind = struct.unpack('<IHB', data[offset:offset + 7])
    payload, offset = data[offset + 7:offset + 7 + length], offset + 7 + length
    if kind == 0:
      break
    pending = payload if kind in (_FULL, _FIRST) else pending + payload
    if kind in (_FULL, _LAST):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(pending)
      if record.WhichOneof('record_type') == 'history':
        rows.append({item.key or '/'.join(item.nested_key): json.loads(item.value_json)
                     for item in record.history.item})
  return rows


def test_settings_name_and_group_the_run_from_the_sweep_and_keep_its_id(tmp_path):
  c = base_config()
  c.train.wandb_project = 'scaling'
  assert wandb_logger.wandb_settings(c, tmp_path / 'run-a')['name'] == 'run-a'
  c.sweep = {'name': 'widths', 'label': 'd_model=64'}
  settings = wandb_logger.wandb_settings(c, tmp_path / 'run-a')
  assert (settings['project'], settings['name'], settings['group']) == (
      'scaling', 'd_model=64', 'widths')
  assert settings['id'] == wandb_logger.wandb_settings(c, tmp_path / 'run-a')['id']
  assert settings['id'] != wandb_logger.wandb_settings(c, tmp_path / 'run-b')['id']
  assert not wandb_logger.trackers(base_config(), tmp_path)


def test_offline_history_holds_the_metrics_jsonl_numbers(tmp_path, monkeypatch):
  pytest.importorskip('wandb')
  monkeypatch.setenv('WANDB_MODE', 'offline')
  monkeypatch.setenv('WANDB_SILENT', 'true')
  c = base_config()
  c.train.update(wandb_project='tests', wandb_name='tiny')
  workdir = tmp_path / 'run'
  workdir.mkdir()
  writer = metrics_lib.MetricsWriter(workdir, tensorboard=False,
                                     trackers=wandb_logger.trackers(c, workdir))
  rng = np.random.default_rng()
  for step in range(1, 13):
    record = {'step': step, 'loss': float(rng.random() * 5), 'lr': float(rng.random())}
    if step % 4 == 0:
      record['eval_loss'] = float(rng.random() * 5)
    writer.write(record)
  writer.write({'step': 12, 'event': 'checkpoint'})  # no number besides the step: not logged
  writer.close()
  logged = [r for r in run_dir.metric_records(workdir) if 'event' not in r]
  files = sorted((workdir / run_dir.WANDB_DIR).glob('offline-run-*/run-*.wandb'))
  assert len(files) == 1
  history = offline_history(files[0])
  assert len(history) == len(logged) == 12
  for row, record in zip(history, logged):
    assert {k: v for k, v in row.items() if not k.startswith('_')} == record


def test_a_training_run_logs_to_wandb_what_it_writes_to_metrics_jsonl(tmp_path, monkeypatch):
  pytest.importorskip('wandb')
  from research.train.loop import train
  from tests.train_helpers import tiny_config, write_corpus
  monkeypatch.setenv('WANDB_MODE', 'offline')
  monkeypatch.setenv('WANDB_SILENT', 'true')
  c = tiny_config(write_corpus(tmp_path / 'text'), tmp_path / 'cache', num_steps=6,
                  eval_every=3, checkpoint_every=6)
  c.train.update(wandb_project='tests', wandb_group='unit')
  workdir = tmp_path / 'run'
  train(c, workdir, log=lambda *_: None)
  numeric = lambda r: {k: v for k, v in r.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
  logged = [numeric(r) for r in run_dir.metric_records(workdir) if len(numeric(r)) > 1]
  assert sum('loss' in r for r in logged) == 6 and sum('eval_loss' in r for r in logged) == 2
  (wandb_file,) = (workdir / run_dir.WANDB_DIR).glob('offline-run-*/run-*.wandb')
  history = [{k: v for k, v in row.items() if not k.startswith('_')}
             for row in offline_history(wandb_file)]
  assert history == logged



@pytest.mark.slow
def test_a_killed_run_resumed_continues_its_wandb_run(tmp_path, monkeypatch):
  """A run SIGKILLed after its checkpoint at step 4 and run again: the second process continues
  the same W&B run id from the step after the checkpoint it resumed from, with the numbers
  metrics.jsonl holds."""
  pytest.importorskip('wandb')
  from tests.train_helpers import launch_train, logged_step, wait_for, write_config_file
  from tests.train_helpers import write_corpus
  monkeypatch.setenv('WANDB_MODE', 'offline')
  monkeypatch.setenv('WANDB_SILENT', 'true')
  config_file = write_config_file(
      tmp_path / 'config.py', write_corpus(tmp_path / 'text', num_docs=12), tmp_path / 'cache',
      "c.train.wandb_project = 'tests'", num_steps=40, eval_every=40, checkpoint_every=4,
      warmup_steps=1)
  workdir = tmp_path / 'run'
  first = launch_train(config_file, workdir)
  committed = lambda: (workdir / run_dir.CHECKPOINT_DIR / '4').is_dir() and logged_step(workdir) > 5
  assert wait_for(committed, first), first.communicate()[0][-3000:]
  first.kill()
  first.wait()
  killed_at = logged_step(workdir)
  second = launch_train(config_file, workdir)
  out = second.communicate(timeout=600)[0]
  assert second.returncode == 0, out[-3000:]
  files = sorted((workdir / run_dir.WANDB_DIR).glob('offline-run-*/run-*.wandb'))
  ids = {f.parent.name.rsplit('-', 1)[1] for f in files}
  assert len(files) == 2 and len(ids) == 1, files
  sessions = [[row for row in offline_history(f) if 'loss' in row] for f in files]
  logged = {r['step']: r['loss'] for r in run_dir.metric_records(workdir) if 'loss' in r}
  assert sorted(logged) == list(range(1, 41))
  # The second session logs from the checkpoint it resumed from to the end, steps the killed
  # one had logged included. What the killed session had not flushed to its offline log is lost
  # to W&B (here all of it: its service died with it); metrics.jsonl keeps every step.
  resumed_from = int(re.search(r'resumed from the checkpoint at step (\d+)', out).group(1))
  assert 4 <= resumed_from < killed_at
  assert [row['step'] for row in sessions[1]] == list(range(resumed_from + 1, 41))
  for rows in sessions:
    assert all(row['loss'] == logged[row['step']] for row in rows)
