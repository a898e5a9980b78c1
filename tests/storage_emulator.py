"""A Google Cloud Storage emulator on 127.0.0.1 for run directories at gs:// URIs in tests.

`gcp-storage-emulator` (pure Python, in memory) serves the JSON API that gcsfs (epath's gs://
backend) speaks; the environment it sets points gcsfs and TensorStore (Orbax's array writer) at
it, and child processes inherit it. GCS sends an object's generation in the `x-goog-generation`
header of a media download and TensorStore (Orbax's array store) conditions its next write on it;
the emulator leaves that header out, so `serve` adds it (without it the write fails with
"Malformed StorageGeneration").
"""

import contextlib
import importlib.util
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

BUCKET = 'research-test'


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def serve(port: int, bucket: str) -> None:
  """Runs the emulator on 127.0.0.1:`port` with `bucket` until killed; its media downloads carry
  the object's generation and metageneration headers, as GCS's do."""
  from gcp_storage_emulator import server
  from gcp_storage_emulator.exceptions import NotFound
  from gcp_storage_emulator.handlers import objects
  plain_download = objects.download

  def download(request, response, storage, *args, **kwargs):
    try:
      obj = storage.get_file_obj(request.params['bucket_name'], request.params['object_id'])
      response['x-goog-generation'] = obj['generation']
      response['x-goog-metageneration'] = obj['metageneration']
    except NotFound:
      pass  # the plain handler answers 404
    return plain_download(request, response, storage, *args, **kwargs)

  objects.download = download  # the JSON API's GET ?alt=media calls it by this name
  for _, handlers in server.HANDLERS:
    for method, handler in handlers.items():
      if handler is plain_download:
        handlers[method] = download
  server.create_server('127.0.0.1', port, in_memory=True, default_bucket=bucket).run()


def forget_filesystems() -> None:
  """fsspec and epath cache filesystem objects and gcsfs their listings: drop them so the new
  endpoint is used, or what another process wrote since is seen."""
  import fsspec
  import fsspec.config
  import gcsfs
  import gcsfs.core
  # The plain JSON-API filesystem, even if gcsfs was imported before GCSFS_EXPERIMENTAL_... was set.
  fsspec.register_implementation('gs', gcsfs.core.GCSFileSystem, clobber=True)
  if os.environ.get('FSSPEC_GS_TOKEN'):  # fsspec read its environment at import
    fsspec.config.conf.setdefault('gs', {})['token'] = os.environ['FSSPEC_GS_TOKEN']
  else:
    fsspec.config.conf.get('gs', {}).pop('token', None)
  from etils.epath import backend
  gcsfs.GCSFileSystem.clear_instance_cache()
  gcsfs.core.GCSFileSystem.clear_instance_cache()
  backend.fsspec_backend._get_filesystem.cache_clear()  # pylint: disable=protected-access


@contextlib.contextmanager
def gcs_emulator(bucket: str = BUCKET, timeout_s: float = 30.0):
  """Starts the emulator with `bucket`, sets this process's environment to use it, yields that
  environment (a dict of the variables set), and stops it afterwards."""
  port = _free_port()
  serve_here = f'from tests.storage_emulator import serve; serve({port}, {bucket!r})'
  process = subprocess.Popen(
      [sys.executable, '-c', serve_here],
      cwd=pathlib.Path(__file__).parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + timeout_s
  while True:
    try:
      socket.create_connection(('127.0.0.1', port), timeout=1).close()
      break
    except OSError:
      if process.poll() is not None or time.time() > deadline:
        process.kill()
        raise RuntimeError('the GCS emulator did not start')
      time.sleep(0.1)
  url = f'http://127.0.0.1:{port}'
  env = {'STORAGE_EMULATOR_HOST': url,  # gcsfs
         'TENSORSTORE_GCS_HTTP_URL': url,  # TensorStore's gcs driver
         'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'emulator',  # TensorStore: no credential lookup
         'NO_GCE_CHECK': 'true',  # google-auth: no metadata-server probe
         'FSSPEC_GS_TOKEN': 'anon',  # gcsfs: no credential lookup (each costs ~1 s)
         # gcsfs: the plain JSON-API filesystem, not the gRPC one that asks each bucket's type
         # (the emulator has no gRPC; read when gcsfs is first imported).
         'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false'}
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  forget_filesystems()
  try:
    yield env
  finally:
    for key, value in saved.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value
    forget_filesystems()
    process.kill()
    process.wait()


@pytest.fixture(scope='module')
def emulator():
  """The emulator for a test module (imported into it); skipped without the test extra."""
  # Looked up, not imported: gcsfs reads the emulator's settings when first imported.
  if not all(importlib.util.find_spec(m) for m in ('gcsfs', 'gcp_storage_emulator')):
    pytest.skip('needs gcsfs and gcp-storage-emulator (the test extra)')
  with gcs_emulator() as env:
    yield env
