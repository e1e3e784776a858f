"""Paths that are local or in a bucket: every user path (workdir, data_dir, checkpoints, export
outputs) goes through :func:`path` (``etils.epath``), so ``gs://bucket/run`` works wherever a
local directory does.

Cloud Storage goes through ``gcsfs`` (fsspec) for files and tensorstore for orbax's arrays.
A local Cloud Storage emulator (e.g. ``gcp-storage-emulator``, ``fake-gcs-server``) is used when
``STORAGE_EMULATOR_HOST=http://HOST:PORT`` is set: importing this module points tensorstore at the
same server (``TENSORSTORE_GCS_HTTP_URL``) unless that is set already, turns off gcsfs' zonal-bucket
lookups (``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false``), and makes ``etils.epath``
use fsspec (``EPATH_USE_TF=0``; TensorFlow's GCS filesystem cannot reach an emulator), so real
buckets and the emulator take the same code path.

:func:`check_reachable` is the up-front check of a ``gs://`` path: a missing emulator, missing
credentials or a missing bucket give one message naming what to set, within seconds, before
anything is written.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import socket
import tempfile
import urllib.parse
from typing import Iterator, Union

os.environ.setdefault('EPATH_USE_TF', '0')
if os.environ.get('STORAGE_EMULATOR_HOST'):
  os.environ.setdefault('TENSORSTORE_GCS_HTTP_URL', os.environ['STORAGE_EMULATOR_HOST'])
  # gcsfs' zonal-bucket support asks the Storage Control gRPC API for every bucket's layout, which
  # an emulator does not serve (each failed lookup waits for Google's credential probes).
  os.environ.setdefault('GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT', 'false')

import fsspec  # noqa: E402
from etils import epath  # noqa: E402  (after EPATH_USE_TF)

from ghostnets_jax.errors import UserError  # noqa: E402

# Bucket listings are read fresh: other hosts and tensorstore (orbax's arrays) write to the same
# directories, and a cached listing would hide their new checkpoints.
for _protocol in ('gs', 'gcs'):
  fsspec.config.conf.setdefault(_protocol, {}).setdefault('use_listings_cache', False)

PathLike = Union[str, os.PathLike]
CHECK_TIMEOUT_S = 20.0


class StorageError(UserError, OSError):
  """A bucket path that cannot be used: no emulator, no credentials, no bucket."""


def is_remote(p: PathLike) -> bool:
  """True for ``scheme://...`` paths (gs://, s3://, ...)."""
  return '://' in os.fspath(p)


def path(p: PathLike) -> epath.Path:
  """``p`` as an ``epath.Path``: bucket paths as given, local paths absolute (``~`` expanded)."""
  s = os.fspath(p)
  if is_remote(s):
    return epath.Path(s)
  return epath.Path(os.path.abspath(os.path.expanduser(s)))


def tensorstore_url(p: PathLike) -> str:
  """The tensorstore kvstore URL of directory ``p`` (``file:///abs/`` or ``gs://bucket/dir/``)."""
  s = os.fspath(path(p))
  return (s if is_remote(s) else f'file://{s}').rstrip('/') + '/'


def write_text(p: PathLike, text: str) -> None:
  """Writes ``text`` to ``p`` whole: a local file through a renamed temporary file (a reader never
  sees half of it); a bucket object is replaced in one upload."""
  p = path(p)
  p.parent.mkdir(parents=True, exist_ok=True)
  if is_remote(p):
    p.write_text(text)
    return
  tmp = p.parent / f'.{p.name}.tmp'
  tmp.write_text(text)
  os.replace(tmp, p)


@contextlib.contextmanager
def local_file(p: PathLike) -> Iterator[str]:
  """A local filename with the contents of ``p`` (a bucket object is copied to a temporary file,
  removed afterwards), for readers that only take local files (MindSpore, tensorstore-free APIs)."""
  if not is_remote(p):
    yield os.fspath(path(p))
    return
  src = path(p)
  with tempfile.TemporaryDirectory(prefix='ghostnets_jax-') as d:
    local = os.path.join(d, src.name)
    with src.open('rb') as fin, open(local, 'wb') as fout:
      shutil.copyfileobj(fin, fout)
    yield local


def upload(local: PathLike, dst: PathLike) -> None:
  """Copies the local file ``local`` to ``dst`` (local or bucket)."""
  with open(local, 'rb') as fin, path(dst).open('wb') as fout:
    shutil.copyfileobj(fin, fout)


def _emulator() -> str:
  return os.environ.get('STORAGE_EMULATOR_HOST', '')


def _check_emulator(url: str, what: str) -> None:
  parsed = urllib.parse.urlparse(url if '://' in url else f'http://{url}')
  host, port = parsed.hostname or '', parsed.port or (443 if parsed.scheme == 'https' else 80)
  try:
    socket.create_connection((host, port), timeout=3).close()
  except OSError as e:
    raise StorageError(
        f'{what}: the Cloud Storage emulator at STORAGE_EMULATOR_HOST={url} is not reachable '
        f'({e.strerror or e}). Start it (e.g. `gcp-storage-emulator start --port={port} '
        '--in-memory`) or unset STORAGE_EMULATOR_HOST and TENSORSTORE_GCS_HTTP_URL to use Google '
        'Cloud Storage. Nothing was written.') from None
  ts_url = os.environ.get('TENSORSTORE_GCS_HTTP_URL', '')
  if ts_url.rstrip('/') != url.rstrip('/'):
    raise StorageError(
        f'{what}: STORAGE_EMULATOR_HOST={url} but TENSORSTORE_GCS_HTTP_URL={ts_url}: checkpoints '
        '(written by tensorstore) and the other files (written by gcsfs) would go to different '
        f'servers. Set TENSORSTORE_GCS_HTTP_URL={url} or unset it. Nothing was written.')


def _check_credentials(what: str) -> None:
  import google.auth
  import google.auth.exceptions
  try:
    google.auth.default()
  except google.auth.exceptions.DefaultCredentialsError:
    raise StorageError(
        f'{what}: no Google Cloud credentials found. Run `gcloud auth application-default login`, '
        'set GOOGLE_APPLICATION_CREDENTIALS=/path/to/key.json, or run on a Cloud TPU/GCE VM with '
        'a service account; for a local emulator set STORAGE_EMULATOR_HOST=http://HOST:PORT '
        '(and TENSORSTORE_GCS_HTTP_URL to the same). Nothing was written.') from None


def check_reachable(p: PathLike, what: str = 'path', timeout: float = CHECK_TIMEOUT_S) -> None:
  """Raises :class:`StorageError` (one message: what to set) unless the bucket of ``p`` answers.

  Local paths and schemes other than ``gs://`` are not checked here.
  """
  s = os.fspath(p)
  if not s.startswith('gs://'):
    return
  label = f'{what} {s}'
  try:
    import gcsfs  # noqa: F401
  except ImportError:
    raise StorageError(f'{label}: gs:// paths need the gcsfs package: pip install gcsfs '
                       '(it is in requirements.txt).') from None
  if _emulator():
    _check_emulator(_emulator(), label)
  else:
    _check_credentials(label)
  bucket = s[len('gs://'):].split('/', 1)[0]
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
  try:
    found = pool.submit(lambda: epath.Path(f'gs://{bucket}').exists()).result(timeout=timeout)
  except concurrent.futures.TimeoutError:
    raise StorageError(f'{label}: Cloud Storage did not answer within {timeout:.0f} s (network or '
                       'endpoint problem); check connectivity, or STORAGE_EMULATOR_HOST for an '
                       'emulator. Nothing was written.') from None
  except Exception as e:   # gcsfs/google-auth raise many types (HttpError, RefreshError, ...)
    raise StorageError(f'{label}: Cloud Storage refused access to bucket {bucket} '
                       f'({type(e).__name__}: {" ".join(str(e).split())[:200]}); check the '
                       'credentials and their permissions. Nothing was written.') from None
  finally:
    pool.shutdown(wait=False)
  if not found:
    raise StorageError(f'{label}: bucket gs://{bucket} does not exist (or these credentials cannot '
                       f'see it). Create it (`gcloud storage buckets create gs://{bucket}`) or fix '
                       'the path. Nothing was written.')
