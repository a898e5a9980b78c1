"""The W&B logger in offline mode: the run's offline history holds the same numbers as
metrics.jsonl, read back from the `.wandb` file W&B writes (no mock, no network)."""

import json
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
