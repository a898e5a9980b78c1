"""Back the host's large buffers with transparent huge pages, by re-executing with glibc's tunable.

XLA on CPU allocates each step's temporaries afresh; glibc serves allocations this large with new
`mmap` regions, so every step faults in its working set 4 KiB at a time (on `bench_cpu`, about
240k faults and a quarter of the step). With `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` glibc asks
for transparent huge pages, and the same step takes a few hundred 2 MiB faults instead. The
tunable is read only when a process starts, so entry points call `use_hugepage_malloc()` before
anything else and the process replaces itself (same pid, arguments and environment, plus the
tunable). Setting `glibc.malloc.hugetlb` yourself, to any value, turns this off.
"""

from __future__ import annotations

import os
import pathlib
import platform
import sys

TUNABLE = 'glibc.malloc.hugetlb'
THP_MODE_FILE = pathlib.Path('/sys/kernel/mm/transparent_hugepage/enabled')


def transparent_hugepage_mode(mode_file: pathlib.Path = THP_MODE_FILE) -> str | None:
  """The kernel's THP mode ('always', 'madvise' or 'never'), or None where it is not exposed."""
  try:
    text = mode_file.read_text()
  except OSError:
    return None
  start, end = text.find('['), text.find(']')
  return text[start + 1:end] if 0 <= start < end else None


def hugepage_environment(environ: dict, thp_mode: str | None, libc: str) -> dict | None:
  """The environment to re-execute with, or None when re-executing would change nothing.

  Only glibc reads the tunable, and only THP mode 'madvise' needs it: 'always' already gives huge
  pages and 'never' refuses them. An explicit `glibc.malloc.hugetlb` in GLIBC_TUNABLES wins.
  """
  tunables = environ.get('GLIBC_TUNABLES', '')
  if libc != 'glibc' or thp_mode != 'madvise' or TUNABLE in tunables:
    return None
  return {**environ, 'GLIBC_TUNABLES': ':'.join(filter(None, [tunables, f'{TUNABLE}=1']))}


def use_hugepage_malloc() -> None:
  """Re-execute this process with huge-page malloc where that helps; otherwise return at once.

  Call it first thing under `if __name__ == '__main__':` of an entry point, never on import.
  """
  environ = hugepage_environment(dict(os.environ), transparent_hugepage_mode(),
                                 platform.libc_ver()[0])
  if environ is None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, sys.orig_argv, environ)
  except OSError:
    pass  # keep running as we are: slower, not wrong
