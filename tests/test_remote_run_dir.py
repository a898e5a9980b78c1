"""Run directories in a bucket (gs://, served by a local GCS emulator): atomic writes and the
lease that stands in for a lock there. Training, resuming and fitting in a bucket:
test_bucket_train.py."""

import os

import numpy as np
import pytest

from research import run_dir
from tests.storage_emulator import BUCKET
from tests.storage_emulator import emulator  # pylint: disable=unused-import (a fixture)


def test_atomic_json_round_trips_in_the_bucket_as_one_object(emulator):
  directory = run_dir.as_path(f'gs://{BUCKET}/atomic')
  assert not run_dir.is_local(directory)
  payload = {'status': 'completed', 'loss': float(np.random.default_rng().random())}
  run_dir.write_json_atomically(directory / run_dir.SUMMARY_FILE, payload)
  assert run_dir.read_summary(directory) == payload
  # One object, no temporary object left beside it.
  assert [p.name for p in run_dir.files_under(directory)] == [run_dir.SUMMARY_FILE]


def test_a_lease_in_the_bucket_refuses_a_second_holder_and_is_released(emulator):
  directory = run_dir.as_path(f'gs://{BUCKET}/leased')
  with run_dir.RunLock(directory, ttl_s=5.0):
    assert run_dir.live_lease(directory)['pid'] == os.getpid()
    with pytest.raises(run_dir.DirectoryInUse):
      with run_dir.RunLock(directory, ttl_s=5.0):
        pass
  assert run_dir.live_lease(directory) is None
  with pytest.raises(ValueError, match='flock'):
    run_dir.RunLock(directory, kind='flock')
