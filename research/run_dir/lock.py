"""One process per run directory (and one driver per sweep directory).

Where the filesystem has POSIX locks (local disks, NFS v4), an exclusive `flock` on `.lock`: the
kernel releases it when the holder exits, however it exits (SIGKILL included), and a second
process is refused at once. The lock file names its holder (pid, host, since), so the refusal
says who holds it. A training process started by the sweep runner inherits the runner's lock
(`INHERITED_LOCK_ENV` names the descriptor) instead of taking a second one.

Where locks are missing or only local to one machine (object stores, FUSE mounts of buckets), a
lease (always on a URI such as gs://bucket/run, where no file can be locked): `.lease.json` names its holder and is renewed every `ttl_s / 3` by a heartbeat thread; a
lease not renewed for `ttl_s` has expired and may be taken over. It excludes a second process as
long as the store reads back what was last written (GCS and S3 do) and the hosts' clocks agree to
well within `ttl_s`; a killed holder keeps the directory until its lease expires; two processes
starting within the same fraction of a second are told apart by reading the lease back after
writing it, which a store that reorders writes could defeat.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
import uuid

from research.run_dir.atomic import read_json, write_json_atomically
from research.run_dir.layout import LEASE_FILE, LOCK_FILE
from research.run_dir.paths import as_path, is_local

INHERITED_LOCK_ENV = 'RESEARCH_RUN_LOCK_FD'  # fd of a run-directory lock a parent passed down
LOCK_KINDS = ('auto', 'flock', 'lease')
LEASE_TTL_S = 60.0


class DirectoryInUse(RuntimeError):
  """Another process holds the run directory."""


def try_lock(directory, lock_file: str = LOCK_FILE) -> int | None:
  """The fd of an exclusive lock on `directory/lock_file`, or None if another process holds it.

  The lock lasts until the fd is closed, or the process holding it (or a child it passed the fd
  to) exits, however it exits.
  """
  fd = os.open(os.path.join(directory, lock_file), os.O_CREAT | os.O_RDWR, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd
  except BlockingIOError:
    os.close(fd)
    return None
  except OSError:
    os.close(fd)
    raise


def wait_for_lock(directory, lock_file: str = LOCK_FILE, poll_s: float = 2.0) -> int:
  """`try_lock` until it succeeds."""
  while (fd := try_lock(directory, lock_file)) is None:
    time.sleep(poll_s)
  return fd


def _holder() -> dict:
  return {'pid': os.getpid(), 'host': socket.gethostname(),
          'since': time.strftime('%Y-%m-%dT%H:%M:%S%z')}


def _describe(holder: dict | None) -> str:
  if not holder:
    return 'another process'
  return f'pid {holder.get("pid")} on {holder.get("host")} (since {holder.get("since")})'


def _inherited_fd(path: str) -> int | None:
  """The lock fd a parent passed down for `path`, if it is one (same file, still open)."""
  value = os.environ.get(INHERITED_LOCK_ENV)
  if not value:
    return None
  try:
    fd, held, here = int(value), os.fstat(int(value)), os.stat(path)
  except (ValueError, OSError):
    return None
  return fd if (held.st_dev, held.st_ino) == (here.st_dev, here.st_ino) else None


class _Flock:
  def __init__(self, directory, lock_file: str = LOCK_FILE):
    self.path = os.path.join(directory, lock_file)
    self.fd = None

  def acquire(self) -> None:
    if os.path.exists(self.path) and (fd := _inherited_fd(self.path)) is not None:
      self.fd = fd
    else:
      self.fd = try_lock(os.path.dirname(self.path), os.path.basename(self.path))
    if self.fd is None:
      try:
        holder = json.loads(open(self.path).read() or 'null')
      except (OSError, json.JSONDecodeError):
        holder = None
      raise DirectoryInUse(f'{os.path.dirname(self.path)} is in use by {_describe(holder)}; '
                           'wait for it to finish or stop it, then run the same command again')
    os.ftruncate(self.fd, 0)
    os.pwrite(self.fd, json.dumps(_holder()).encode(), 0)

  def release(self) -> None:
    if self.fd is not None:
      os.close(self.fd)
      self.fd = None


def _live(lease: dict | None, ttl_s: float = LEASE_TTL_S) -> bool:
  return bool(lease) and time.time() - lease.get('renewed', 0) < lease.get('ttl_s', ttl_s)


def live_lease(directory, lease_file: str = LEASE_FILE) -> dict | None:
  """The lease on `directory` if one is live (renewed within its ttl), else None."""
  lease = read_json(as_path(directory) / lease_file)
  return lease if _live(lease) else None


class _Lease:
  def __init__(self, directory, ttl_s: float, lease_file: str = LEASE_FILE):
    self.directory = as_path(directory)
    self.path = self.directory / lease_file
    self.ttl_s = ttl_s
    self.record = {**_holder(), 'owner': uuid.uuid4().hex, 'ttl_s': ttl_s}
    self._stop = threading.Event()
    self._thread = None

  def acquire(self) -> None:
    lease = read_json(self.path)
    if _live(lease, self.ttl_s) and lease.get('owner') != self.record['owner']:
      raise DirectoryInUse(f'{self.directory} is leased by {_describe(lease)}, '
                           f'renewed {time.time() - lease["renewed"]:.0f} s ago (expires after '
                           f'{lease["ttl_s"]:.0f} s without renewal)')
    self._write()
    time.sleep(min(0.5, self.ttl_s / 10))  # a concurrent writer's lease lands by now
    lease = read_json(self.path)
    if not lease or lease.get('owner') != self.record['owner']:
      raise DirectoryInUse(f'{self.directory} was leased at the same moment by '
                           f'{_describe(lease)}')
    self._thread = threading.Thread(target=self._heartbeat, daemon=True)
    self._thread.start()

  def _write(self) -> None:
    write_json_atomically(self.path, {**self.record, 'renewed': time.time()})

  def _heartbeat(self) -> None:
    while not self._stop.wait(self.ttl_s / 3):
      self._write()

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    lease = read_json(self.path)
    if lease and lease.get('owner') == self.record['owner']:
      self.path.unlink()


class RunLock:
  """`with RunLock(run_dir):` holds the run directory for this process, or raises DirectoryInUse.

  `kind`: 'flock', 'lease', or 'auto' (flock, and a lease where the filesystem has no locks; on a
  URI such as gs://bucket/run, always the lease). `lock_file` and `lease_file` name the files
  (the sweep driver holds its sweep directory with others).
  """

  def __init__(self, directory, kind: str = 'auto', ttl_s: float = LEASE_TTL_S,
               lock_file: str = LOCK_FILE, lease_file: str = LEASE_FILE):
    if kind not in LOCK_KINDS:
      raise ValueError(f'train.run_lock={kind!r}: expected one of {LOCK_KINDS}')
    if kind == 'flock' and not is_local(directory):
      raise ValueError(f"train.run_lock='flock': {directory} is in an object store, where no "
                       "file can be locked; use 'auto' or 'lease'")
    self.directory, self.kind, self.ttl_s = os.fspath(directory), kind, ttl_s
    self.lock_file, self.lease_file = lock_file, lease_file
    self._held = None

  def __enter__(self):
    as_path(self.directory).mkdir(parents=True, exist_ok=True)
    if self.kind == 'lease' or not is_local(self.directory):
      held = _Lease(self.directory, self.ttl_s, self.lease_file)
    else:
      held = _Flock(self.directory, self.lock_file)
    try:
      held.acquire()
    except OSError as e:
      if self.kind == 'flock' or e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
        raise
      held = _Lease(self.directory, self.ttl_s, self.lease_file)
      held.acquire()
    self._held = held
    return self

  def __exit__(self, *exc):
    if self._held is not None:
      self._held.release()
      self._held = None
