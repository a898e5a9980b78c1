"""Atomic writes: a file is written beside its final name and renamed over it.

A reader sees the old file or the new one, never half of one, and a process killed mid-write
leaves only a hidden temporary file behind.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Callable


def write_atomically(path, write: Callable[[str], None]) -> None:
  """`write(tmp_path)` fills a temporary file next to `path`, which is then renamed to `path`.

  The file is flushed to disk before the rename and is readable by everyone (0o644).
  """
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  os.close(fd)
  try:
    os.chmod(tmp, 0o644)  # mkstemp makes it private
    write(tmp)
    with open(tmp, 'rb') as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text_atomically(path, text: str) -> None:
  write_atomically(path, lambda tmp: pathlib.Path(tmp).write_text(text))


def write_json_atomically(path, obj) -> None:
  """`obj` as indented JSON with sorted keys."""
  write_text_atomically(path, json.dumps(obj, indent=2, sort_keys=True))


def read_json(path) -> dict | None:
  """A JSON file's contents, or None if it is missing or half-written."""
  try:
    return json.loads(pathlib.Path(path).read_text())
  except (FileNotFoundError, json.JSONDecodeError):
    return None
