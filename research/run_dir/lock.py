"""One process per run directory (and one driver per sweep directory): an exclusive lock."""

from __future__ import annotations

import fcntl
import os
import time

from research.run_dir.layout import LOCK_FILE


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


def wait_for_lock(directory, lock_file: str = LOCK_FILE, poll_s: float = 2.0) -> int:
  """`try_lock` until it succeeds."""
  while (fd := try_lock(directory, lock_file)) is None:
    time.sleep(poll_s)
  return fd
