"""The run-directory lock: flock refuses a second holder and names the first, a child given the
lock's descriptor holds it too, and the lease that replaces flock where filesystems have no locks
refuses while renewed and is taken over once expired."""

import os
import subprocess
import sys
import time

import pytest

from research import run_dir
from research.run_dir import lock as lock_lib

HOLD = '''
import sys, time
from research.run_dir import RunLock
with RunLock(sys.argv[1], kind=sys.argv[2], ttl_s=float(sys.argv[3])):
  print('held', flush=True)
  time.sleep(600)
'''


def _holder(directory, kind, ttl_s=60.0):
  env = dict(os.environ, PYTHONPATH=str(lock_lib.__file__).rsplit('/research/', 1)[0])
  process = subprocess.Popen([sys.executable, '-c', HOLD, str(directory), kind, str(ttl_s)],
                             env=env, stdout=subprocess.PIPE, text=True)
  assert process.stdout.readline().strip() == 'held'
  return process


@pytest.mark.parametrize('kind', ['flock', 'lease'])
def test_a_second_holder_is_refused_with_the_first_ones_pid_and_host(tmp_path, kind):
  holder = _holder(tmp_path, kind)
  try:
    with pytest.raises(run_dir.DirectoryInUse, match=f'pid {holder.pid} on '):
      with run_dir.RunLock(tmp_path, kind=kind):
        pass
  finally:
    holder.kill()
    holder.wait()


def test_flock_is_released_when_its_holder_is_killed(tmp_path):
  holder = _holder(tmp_path, 'flock')
  holder.kill()
  holder.wait()
  with run_dir.RunLock(tmp_path, kind='flock'):
    with pytest.raises(run_dir.DirectoryInUse):  # and held again, by us now
      with run_dir.RunLock(tmp_path, kind='flock'):
        pass


def test_a_killed_lease_holder_keeps_the_directory_until_its_lease_expires(tmp_path):
  holder = _holder(tmp_path, 'lease', ttl_s=1.5)
  holder.kill()
  holder.wait()
  with pytest.raises(run_dir.DirectoryInUse, match='leased by'):
    with run_dir.RunLock(tmp_path, kind='lease', ttl_s=1.5):
      pass
  time.sleep(1.6)
  with run_dir.RunLock(tmp_path, kind='lease', ttl_s=1.5):
    assert run_dir.read_json(tmp_path / run_dir.LEASE_FILE)['pid'] == os.getpid()
  assert not (tmp_path / run_dir.LEASE_FILE).exists()  # released on exit


def test_a_live_lease_is_renewed_by_its_heartbeat(tmp_path):
  with run_dir.RunLock(tmp_path, kind='lease', ttl_s=0.6):
    first = run_dir.read_json(tmp_path / run_dir.LEASE_FILE)['renewed']
    time.sleep(0.7)  # past the ttl: only renewals keep it live
    second = run_dir.read_json(tmp_path / run_dir.LEASE_FILE)['renewed']
    assert second > first
    with pytest.raises(run_dir.DirectoryInUse):
      with run_dir.RunLock(tmp_path, kind='lease', ttl_s=0.6):
        pass


def test_a_child_given_the_lock_descriptor_holds_the_directory(tmp_path, monkeypatch):
  fd = lock_lib.try_lock(tmp_path)
  assert fd is not None
  try:
    with pytest.raises(run_dir.DirectoryInUse):
      with run_dir.RunLock(tmp_path):
        pass
    # The sweep runner's child sees a copy of the runner's descriptor (one open file, one lock).
    monkeypatch.setenv(lock_lib.INHERITED_LOCK_ENV, str(os.dup(fd)))
    with run_dir.RunLock(tmp_path):
      pass
  finally:
    os.close(fd)


def test_an_unknown_lock_kind_names_the_field(tmp_path):
  with pytest.raises(ValueError, match='train.run_lock='):
    run_dir.RunLock(tmp_path, kind='nfs')
