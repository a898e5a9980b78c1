"""A Google Cloud Storage emulator on 127.0.0.1 for run directories at gs:// URIs in tests.

`gcp-storage-emulator` (pure Python, in memory) serves the JSON API that gcsfs (epath's gs://
backend) speaks; the environment it sets points gcsfs and TensorStore (Orbax's array writer) at
it, and child processes inherit it. TensorStore can write there, but its reads in a fresh process
fail ("Malformed StorageGeneration"), so checkpoints in the emulator cannot be restored.
"""

import contextlib
import os
import socket
import subprocess
import sys
import time

BUCKET = 'research-test'


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _forget_filesystems() -> None:
  """fsspec and epath cache filesystem objects: drop them so the new endpoint is used."""
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
  process = subprocess.Popen(
      [sys.executable, '-m', 'gcp_storage_emulator', 'start', '--host', '127.0.0.1',
       '--port', str(port), '--default-bucket', bucket, '--in-memory', '--quiet'],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
  _forget_filesystems()
  try:
    yield env
  finally:
    for key, value in saved.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value
    _forget_filesystems()
    process.kill()
    process.wait()
