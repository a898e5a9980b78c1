"""glibc malloc tuned for XLA on CPU: freed memory kept for reuse, on transparent huge pages.

XLA on CPU allocates each step's temporaries afresh (one block of hundreds of MiB). By default
glibc serves a block that large with a new `mmap` and unmaps it on free, so every step faults its
whole working set back in, 4 KiB at a time: on `bench_cpu` about 240k page faults and a quarter of
the step. The tunables below make glibc serve it from the heap and keep it when freed
(`mmap_max=0`, a trim threshold no heap reaches, one arena so every thread reuses the same memory),
and back the heap with transparent huge pages (`hugetlb=1`, where the kernel's THP mode is
'madvise'). On `bench_cpu` this takes about a quarter off the step (experiments/BENCHMARKS.md).

glibc reads tunables only when a process starts, so entry points call `use_tuned_malloc()` before
anything else and the process replaces itself (same pid, arguments and environment, plus
GLIBC_TUNABLES). A tunable you set yourself is left as it is; setting all four turns this off.
"""

from __future__ import annotations

import os
import pathlib
import platform
import sys

THP_MODE_FILE = pathlib.Path('/sys/kernel/mm/transparent_hugepage/enabled')
KEEP_FREED_MEMORY = {
    'glibc.malloc.mmap_max': '0',  # large blocks from the heap, not from fresh mappings
    'glibc.malloc.trim_threshold': str(1 << 40),  # never hand the freed heap back
    'glibc.malloc.arena_max': '1',  # XLA's threads share one heap, so a freed block is reused
}
HUGE_PAGES = {'glibc.malloc.hugetlb': '1'}  # madvise(MADV_HUGEPAGE) on what malloc maps


def transparent_hugepage_mode(mode_file: pathlib.Path = THP_MODE_FILE) -> str | None:
  """The kernel's THP mode ('always', 'madvise' or 'never'), or None where it is not exposed."""
  try:
    text = mode_file.read_text()
  except OSError:
    return None
  start, end = text.find('['), text.find(']')
  return text[start + 1:end] if 0 <= start < end else None


def tuned_malloc_environment(environ: dict, thp_mode: str | None, libc: str) -> dict | None:
  """The environment to re-execute with, or None when re-executing would change nothing.

  Only glibc reads these tunables. Huge pages are asked for only in THP mode 'madvise' ('always'
  gives them anyway, 'never' refuses them). Tunables already in GLIBC_TUNABLES win.
  """
  if libc != 'glibc':
    return None
  wanted = {**KEEP_FREED_MEMORY, **(HUGE_PAGES if thp_mode == 'madvise' else {})}
  current = environ.get('GLIBC_TUNABLES', '')
  already = {item.split('=', 1)[0] for item in current.split(':') if item}
  added = [f'{name}={value}' for name, value in wanted.items() if name not in already]
  if not added:
    return None
  return {**environ, 'GLIBC_TUNABLES': ':'.join(filter(None, [current, *added]))}


def use_tuned_malloc() -> None:
  """Re-execute this process with the tuned malloc where that changes anything; else return.

  Call it first thing under `if __name__ == '__main__':` of an entry point, never on import.
  """
  environ = tuned_malloc_environment(dict(os.environ), transparent_hugepage_mode(),
                                     platform.libc_ver()[0])
  if environ is None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, sys.orig_argv, environ)
  except OSError:
    pass  # keep running as we are: slower, not wrong
