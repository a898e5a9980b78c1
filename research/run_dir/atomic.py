"""Atomic writes: a reader sees the old file or the new one, never half of one.

On a local filesystem the file is written beside its final name and renamed over it; a process
killed mid-write leaves only a hidden temporary file behind. An object store (gs://, s3://) has no
rename, but an object appears only once its upload completes: the file is written to a local
temporary file and uploaded as the final object in one request, which is atomic per object.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Callable

from research.run_dir.paths import as_path, is_local


def write_atomically(path, write: Callable[[str], None]) -> None:
  """`write(tmp_path)` fills a local temporary file, which then becomes `path` at once.

  Locally the file is flushed to disk before the rename and is readable by everyone (0o644).
  """
  if not is_local(path):
    with tempfile.TemporaryDirectory(prefix='research-upload-') as staging:
      tmp = os.path.join(staging, as_path(path).name)
      write(tmp)
      as_path(path).write_bytes(pathlib.Path(tmp).read_bytes())  # one upload: one new object
    return
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
    return json.loads(as_path(path).read_text())
  except (FileNotFoundError, json.JSONDecodeError):
    return None
