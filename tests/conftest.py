"""`--slow` also runs the tests marked slow (long end-to-end runs: post-training chains, expert
parallelism on 8 devices, resumes on other meshes); by default they are skipped so that the suite
stays quick on 2 cores.

Compiled programs are shared across the session through JAX's persistent compilation cache, in a
temporary directory that subprocesses inherit through the environment: the many runs that train,
kill and resume the same small configs compile each program once. A cached executable is the
same program, so bitwise comparisons between runs are unaffected. A cache directory already set
in the environment is used as it is.
"""

import os
import shutil
import tempfile

import pytest

_SESSION_CACHE = None
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:  # before any test module imports jax
  _SESSION_CACHE = tempfile.mkdtemp(prefix='jax-compilation-cache-')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _SESSION_CACHE


def pytest_addoption(parser):
  parser.addoption('--slow', action='store_true', help='also run the tests marked slow')


def pytest_collection_modifyitems(config, items):
  if config.getoption('--slow'):
    return
  skip = pytest.mark.skip(reason='slow: run with --slow')
  for item in items:
    if 'slow' in item.keywords:
      item.add_marker(skip)


def pytest_unconfigure(config):
  if _SESSION_CACHE:
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
