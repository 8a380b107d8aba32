"""Transports for the device's TUF client: python-tuf's :class:`~tuf.ngclient.FetcherInterface` plug-ins.

Every URL the client asks for is ``edgectl-repo:///<path>`` where ``<path>`` is a file of the published repository
(``metadata/...`` or ``targets/...``), so any transport that can serve those two folders can carry updates.

* :class:`LocalDirFetcher` serves a repository folder (a USB stick, an NFS mount, a test).
* :class:`MemoryFetcher` serves a dict of files; tests play the attacker by editing it.
* :class:`GuardedFetcher` wraps any fetcher with a byte cap and a deadline per download, so a slow or endless
  transport cannot hold the device forever (the fleet's MQTT fetcher gets the same guard). The deadline is checked
  between chunks, so a transport must also bound each blocking read itself.

Public API: :data:`REPO_URL`, :func:`url_to_path`, :class:`LocalDirFetcher`, :class:`MemoryFetcher`,
:class:`GuardedFetcher`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tuf.api.exceptions import DownloadError, DownloadHTTPError, DownloadLengthMismatchError, SlowRetrievalError
from tuf.ngclient import FetcherInterface

REPO_URL = "edgectl-repo:///"
METADATA_URL = REPO_URL + "metadata/"
TARGETS_URL = REPO_URL + "targets/"
CHUNK = 1 << 20


def url_to_path(url: str) -> str:
    """The repository-relative path of ``url``; raises :class:`DownloadError` for anything outside the repository."""
    if not url.startswith(REPO_URL):
        raise DownloadError(f"URL {url!r} is not an edgectl repository URL.")
    rel = url[len(REPO_URL) :]
    parts = PurePosixPath(rel).parts
    if not parts or parts[0] not in ("metadata", "targets") or any(p in ("", ".", "..") for p in parts) or "\\" in rel:
        raise DownloadError(f"URL {url!r} points outside the repository's metadata/ and targets/ folders.")
    return rel


class LocalDirFetcher(FetcherInterface):
    """Serve files from a published repository folder (the one holding ``metadata/`` and ``targets/``)."""

    def __init__(self, root: Path, *, chunk_size: int = CHUNK) -> None:
        self.root = Path(root)
        self.chunk_size = chunk_size

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = self.root / url_to_path(url)
        if path.is_symlink() or not path.is_file():
            # A 404 tells python-tuf "no newer root" while it walks root versions.
            raise DownloadHTTPError(f"{url_to_path(url)} not found in {self.root}", 404)
        fh = open(path, "rb")  # noqa: SIM115 - closed by the generator, which owns it
        return self._chunks(fh)

    def _chunks(self, fh: BinaryIO) -> Iterator[bytes]:
        with fh:
            while chunk := fh.read(self.chunk_size):
                yield chunk


class MemoryFetcher(FetcherInterface):
    """Serve ``files`` (repository-relative path -> bytes). ``requests`` lists every path asked for, in order."""

    def __init__(self, files: dict[str, bytes] | None = None, *, chunk_size: int = CHUNK) -> None:
        self.files: dict[str, bytes] = dict(files or {})
        self.requests: list[str] = []
        self.chunk_size = chunk_size

    @classmethod
    def from_dir(cls, root: Path) -> MemoryFetcher:
        """Load every file under ``root/metadata`` and ``root/targets`` (a published repository) into memory."""
        root = Path(root)
        files = {}
        for sub in ("metadata", "targets"):
            for path in sorted((root / sub).rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    files[path.relative_to(root).as_posix()] = path.read_bytes()
        return cls(files)

    def sync_from_dir(self, root: Path) -> None:
        """Replace the served files with the repository's current ones (the honest mirror catches up)."""
        self.files = MemoryFetcher.from_dir(root).files

    def _fetch(self, url: str) -> Iterator[bytes]:
        rel = url_to_path(url)
        self.requests.append(rel)
        data = self.files.get(rel)
        if data is None:
            raise DownloadHTTPError(f"{rel} not found", 404)
        return (data[i : i + self.chunk_size] for i in range(0, max(len(data), 1), self.chunk_size))


class GuardedFetcher(FetcherInterface):
    """Wrap ``inner`` so that each download stops at a byte cap and a deadline.

    Args:
        inner: the transport.
        max_metadata_bytes: cap for any ``metadata/`` file (python-tuf applies its own per-role caps too).
        max_target_bytes: cap for any ``targets/`` file.
        timeout_s: the most seconds one download may take, however the bytes trickle in (slow retrieval).
        monotonic: the clock the deadline is measured with (tests inject one).
    """

    def __init__(
        self,
        inner: FetcherInterface,
        *,
        max_metadata_bytes: int,
        max_target_bytes: int,
        timeout_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.max_metadata_bytes = max_metadata_bytes
        self.max_target_bytes = max_target_bytes
        self.timeout_s = timeout_s
        self._monotonic = monotonic

    def _fetch(self, url: str) -> Iterator[bytes]:
        rel = url_to_path(url)
        cap = self.max_metadata_bytes if rel.startswith("metadata/") else self.max_target_bytes
        started = self._monotonic()
        chunks = self.inner.fetch(url)
        return self._guard(rel, chunks, cap, started)

    def _guard(self, rel: str, chunks: Iterator[bytes], cap: int, started: float) -> Iterator[bytes]:
        received = 0
        for chunk in chunks:
            received += len(chunk)
            if received > cap:
                raise DownloadLengthMismatchError(f"{rel} sent more than this device's {cap}-byte limit")
            if self._monotonic() - started > self.timeout_s:
                raise SlowRetrievalError(f"{rel} took longer than {self.timeout_s:g} s to download")
            yield chunk
