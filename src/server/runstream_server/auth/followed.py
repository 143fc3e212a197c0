"""Files the server follows as they change, without a restart: its TLS certificate (see
auth/certificates.py) and its token verification keys (auth/tokens.py).

A renewed certificate or a rotated key set is written in place (cert-manager, certbot, a
sidecar syncing an identity provider's JWKS, a mounted secret). The server looks at the files'
status at most once a second, when it needs them (a handshake, a token), and reads them only
once one changed; what it cannot load yet (a key written before its certificate, a file cut
short) is not taken, the last good files serving on, with one warning per change.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["RECHECK_SECONDS", "FollowedFiles"]

RECHECK_SECONDS = 1.0
"""How often, at most, the files' status is looked at."""

Stamp = tuple[tuple[int, int, int], ...]
"""Each file's inode, size and modification time: any write or replacement changes it."""


class FollowedFiles:
    """Whether files changed since they were last taken (safe from any thread)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        """Call as the files are read for the first time: that reading is the one taken."""
        self._paths = list(paths)
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._taken = self._status()
        self._refused: Stamp | None = None

    def changed(self) -> Stamp | None:
        """The files' new status when they changed since last taken (or refused), looked at
        at most once every :data:`RECHECK_SECONDS`; then :meth:`take` or :meth:`refuse` it."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked < RECHECK_SECONDS:
                return None
            self._checked = now
            stamp = self._status()
            return None if stamp in (self._taken, self._refused) else stamp

    def take(self, stamp: Stamp) -> None:
        """The files as of `stamp` are in use."""
        with self._lock:
            self._taken, self._refused = stamp, None

    def refuse(self, stamp: Stamp) -> None:
        """The files as of `stamp` could not be used: not tried again until they change."""
        with self._lock:
            self._refused = stamp

    def _status(self) -> Stamp:
        stamps = []
        for path in self._paths:
            try:
                status = os.stat(path)
            except OSError:
                stamps.append((0, 0, 0))
                continue
            stamps.append((status.st_ino, status.st_size, status.st_mtime_ns))
        return tuple(stamps)
