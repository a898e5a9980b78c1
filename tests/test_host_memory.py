"""Tuned malloc: when entry points re-execute themselves, with what, and that they do it once."""

import ast
import os
import platform
import subprocess
import sys

import pytest

from research import host_memory

KEEP = ('glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776:'
        'glibc.malloc.arena_max=1')


@pytest.mark.parametrize('environ, mode, libc, expected', [
    ({}, 'madvise', 'glibc', KEEP + ':glibc.malloc.hugetlb=1'),
    ({}, 'always', 'glibc', KEEP),  # huge pages already, from the kernel
    ({}, 'never', 'glibc', KEEP),
    ({}, None, 'glibc', KEEP),  # no THP in this kernel
    ({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=4'}, 'never', 'glibc',
     'glibc.malloc.arena_max=4:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776'),
    ({'GLIBC_TUNABLES': KEEP + ':glibc.malloc.hugetlb=0'}, 'madvise', 'glibc', None),  # all set
    ({}, 'madvise', '', None),  # not glibc: the tunables mean nothing
])
def test_tuned_malloc_environment(environ, mode, libc, expected):
  env = host_memory.tuned_malloc_environment({'PATH': '/bin', **environ}, mode, libc)
  if expected is None:
    assert env is None
  else:
    assert env == {'PATH': '/bin', 'GLIBC_TUNABLES': expected}


def test_transparent_hugepage_mode_reads_the_bracketed_choice(tmp_path):
  mode_file = tmp_path / 'enabled'
  mode_file.write_text('always [madvise] never\n')
  assert host_memory.transparent_hugepage_mode(mode_file) == 'madvise'
  assert host_memory.transparent_hugepage_mode(tmp_path / 'missing') is None


def test_reexecutes_once_with_the_tunables_and_keeps_arguments():
  code = ('import os, sys\n'
          'print("started", flush=True)\n'
          'from research.host_memory import use_tuned_malloc\n'
          'use_tuned_malloc()\n'
          'print(repr((os.environ.get("GLIBC_TUNABLES", ""), sys.argv[1:])))\n')
  env = {k: v for k, v in os.environ.items() if k != 'GLIBC_TUNABLES'}
  out = subprocess.run([sys.executable, '-c', code, 'a', '--b=1'], env=env, capture_output=True,
                       text=True, check=True).stdout.splitlines()
  glibc = platform.libc_ver()[0] == 'glibc'
  assert out.count('started') == (2 if glibc else 1)
  tunables, argv = ast.literal_eval(out[-1])
  assert ('glibc.malloc.mmap_max=0' in tunables) == glibc
  assert argv == ['a', '--b=1']
