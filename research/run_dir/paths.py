"""One path type for run directories anywhere: a local disk or an object store (gs://, s3://).

Every path of training, sweeps, fits and inference goes through `as_path`: a URI such as
`gs://bucket/runs/tiny` becomes an `etils.epath.Path` (the path type Orbax and TFDS use), served
by fsspec (gcsfs for gs://, s3fs for s3://); a local path stays a `pathlib.Path`, so everything
local behaves exactly as before (epath's local paths differ in `stat` and recursive globs). Both
have the same pathlib interface, which is all the code uses. Object stores have
no rename, no append and no locks; `atomic.py`, `lock.py` and the metrics writer say what they do
instead, and `docs/launching.md` lists the guarantees that change.
"""

from __future__ import annotations

import os
import pathlib
import shutil
from typing import Union

from etils import epath

AnyPath = Union[pathlib.Path, epath.Path]

REMOTE_PREFIXES = ('gs://', 's3://', 'az://')  # what fsspec serves; everything else is local


def is_local(path) -> bool:
  """True for a path of this machine's filesystems (a mounted bucket included), False for a URI."""
  return not os.fspath(path).startswith(REMOTE_PREFIXES)


def as_path(path) -> AnyPath:
  """`path` (a str, pathlib or epath path): a `pathlib.Path` if local, else an `epath.Path`."""
  if is_local(path):
    return path if isinstance(path, pathlib.Path) else pathlib.Path(os.fspath(path))
  return path if isinstance(path, epath.Path) else epath.Path(os.fspath(path))


def absolute(path) -> AnyPath:
  """An absolute local path (relative to the working directory), or the URI unchanged."""
  path = as_path(path)
  return path.absolute() if is_local(path) else path


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


def files_under(directory) -> list[AnyPath]:
  """Every file below `directory`, sorted (a listing per level; no recursive glob on a store)."""
  directory = as_path(directory)
  if is_local(directory):
    return sorted(p for p in directory.rglob('*') if p.is_file())
  protocol, out = os.fspath(directory).split('://')[0], []
  for root, _, names in directory.walk():  # fsspec names the roots without their protocol
    root = os.fspath(root)
    root = root if '://' in root else f'{protocol}://{root}'
    out += [epath.Path(root) / name for name in names]
  return sorted(out, key=str)
