"""`--slow` also runs the tests marked slow (long end-to-end runs: post-training chains, expert
parallelism on 8 devices, resumes on other meshes); by default they are skipped so that the suite
stays quick on 2 cores."""

import pytest


def pytest_addoption(parser):
  parser.addoption('--slow', action='store_true', help='also run the tests marked slow')


def pytest_collection_modifyitems(config, items):
  if config.getoption('--slow'):
    return
  skip = pytest.mark.skip(reason='slow: run with --slow')
  for item in items:
    if 'slow' in item.keywords:
      item.add_marker(skip)
