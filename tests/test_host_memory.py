"""Huge-page malloc: when entry points re-execute themselves, and that they do it once."""

import ast
import os
import platform
import subprocess
import sys

import pytest

from research import host_memory


@pytest.mark.parametrize('environ, mode, libc, expected', [
    ({}, 'madvise', 'glibc', 'glibc.malloc.hugetlb=1'),
    ({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}, 'madvise', 'glibc',
     'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'),
    ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}, 'madvise', 'glibc', None),  # the user's choice
    ({}, 'always', 'glibc', None),  # huge pages already
    ({}, 'never', 'glibc', None),
    ({}, None, 'glibc', None),  # no THP in this kernel
    ({}, 'madvise', '', None),  # not glibc: the tunable means nothing
])
def test_hugepage_environment(environ, mode, libc, expected):
  env = host_memory.hugepage_environment({'PATH': '/bin', **environ}, mode, libc)
  if expected is None:
    assert env is None
  else:
    assert env == {'PATH': '/bin', 'GLIBC_TUNABLES': expected}


def test_transparent_hugepage_mode_reads_the_bracketed_choice(tmp_path):
  mode_file = tmp_path / 'enabled'
  mode_file.write_text('always [madvise] never\n')
  assert host_memory.transparent_hugepage_mode(mode_file) == 'madvise'
  assert host_memory.transparent_hugepage_mode(tmp_path / 'missing') is None


def test_reexecutes_once_with_the_tunable_and_keeps_arguments():
  code = ('import os, sys\n'
          'print("started", flush=True)\n'
          'from research.host_memory import use_hugepage_malloc\n'
          'use_hugepage_malloc()\n'
          'print(repr((os.environ.get("GLIBC_TUNABLES", ""), sys.argv[1:])))\n')
  env = {k: v for k, v in os.environ.items() if k != 'GLIBC_TUNABLES'}
  out = subprocess.run([sys.executable, '-c', code, 'a', '--b=1'], env=env, capture_output=True,
                       text=True, check=True).stdout.splitlines()
  reexecutes = (host_memory.transparent_hugepage_mode() == 'madvise'
                and platform.libc_ver()[0] == 'glibc')
  assert out.count('started') == (2 if reexecutes else 1)
  tunables, argv = ast.literal_eval(out[-1])
  assert ('glibc.malloc.hugetlb=1' in tunables) == reexecutes
  assert argv == ['a', '--b=1']
