"""One path type for run directories anywhere: a local disk or an object store (gs://, s3://).

Every path of training, sweeps, fits and inference goes through `as_path`, an `etils.epath.Path`
(the path type Orbax and TFDS use): local paths behave as pathlib's do, and a URI such as
`gs://bucket/runs/tiny` is served by fsspec (gcsfs for gs://, s3fs for s3://). Object stores have
no rename, no append and no locks; `atomic.py`, `lock.py` and the metrics writer say what they do
instead, and `docs/launching.md` lists the guarantees that change.
"""

from __future__ import annotations

import os
import pathlib
import shutil

from etils import epath

REMOTE_PREFIXES = ('gs://', 's3://', 'az://')  # what fsspec serves; everything else is local


def is_local(path) -> bool:
  """True for a path of this machine's filesystems (a mounted bucket included), False for a URI."""
  return not os.fspath(path).startswith(REMOTE_PREFIXES)


def as_path(path) -> epath.Path:
  """`path` (a str, pathlib or epath path) as an `epath.Path`."""
  return path if isinstance(path, epath.Path) else epath.Path(os.fspath(path))


def absolute(path) -> epath.Path:
  """An absolute local path (relative to the working directory), or the URI unchanged."""
  path = as_path(path)
  return epath.Path(os.path.abspath(os.fspath(path))) if is_local(path) else path


def remote_filesystem(path):
  """(fsspec filesystem, path within it) of a URI."""
  import fsspec  # etils.epath already depends on it for URIs
  return fsspec.core.url_to_fs(os.fspath(path))


def move(source, target) -> None:
  """Moves a file or a directory tree to `target` (whose parent exists, or is a store prefix).

  Local: a rename within one filesystem. An object store has no rename: every object is copied,
  then the originals are deleted; a process killed midway leaves objects in both places.
  """
  if is_local(source):
    shutil.move(os.fspath(source), os.fspath(target))
    return
  fs, path = remote_filesystem(source)
  fs.mv(path, remote_filesystem(target)[1], recursive=True)


def files_under(directory) -> list[epath.Path]:
  """Every file below `directory`, sorted (a listing per level; no recursive glob on a store)."""
  directory = as_path(directory)
  if is_local(directory):
    return sorted(as_path(p) for p in pathlib.Path(directory).rglob('*') if p.is_file())
  protocol, out = os.fspath(directory).split('://')[0], []
  for root, _, names in directory.walk():  # fsspec names the roots without their protocol
    root = os.fspath(root)
    root = root if '://' in root else f'{protocol}://{root}'
    out += [epath.Path(root) / name for name in names]
  return sorted(out, key=str)
