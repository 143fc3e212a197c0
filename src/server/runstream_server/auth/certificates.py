"""The server's certificate files, followed as they change: a certificate renewed in place
(cert-manager, certbot, a mounted secret) serves the next connection without a restart.

gRPC asks :meth:`CertificateFiles.fetch` at each new TLS handshake whether the certificate
changed. It looks at the files' status at most once a second, and reads them only when a file
changed: a pair that Python's ``ssl`` cannot load (a key written before its certificate, a
file cut short) is not taken, the last good one serving on, with one warning per change.
Connections already open keep the certificate they were made with, as TLS does.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc

__all__ = ["CertificateFiles"]

log = logging.getLogger("runstream.auth")

RECHECK_SECONDS = 1.0
"""How often, at most, the files' status is looked at (a handshake costs one look)."""

Stamp = tuple[tuple[int, int, int], ...]
"""Each file's inode, size and modification time: any write or replacement changes it."""


class CertificateFiles:
    """The certificate, its key and the client CA (mutual TLS), as gRPC's dynamic credentials
    take them."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        client_ca_file: Path | None,
        problem: Callable[[], str | None],
    ) -> None:
        """`problem` says why the files, as they are now, could not serve (None: they can)."""
        self._files = [cert_file, key_file, *([client_ca_file] if client_ca_file else [])]
        self._problem = problem
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._stamp = self._status()
        self._refused: Stamp | None = None

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that take the files again whenever they change."""
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(),
            self.fetch,  # type: ignore[arg-type]  # None keeps the current one (gRPC's docs)
            require_client_authentication=len(self._files) == 3,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """What gRPC asks at each handshake: the files' new configuration, or None to keep
        the one it has."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked < RECHECK_SECONDS:
                return None
            self._checked = now
            stamp = self._status()
            if stamp == self._stamp or stamp == self._refused:
                return None
            problem = self._problem()
            if problem is not None:
                self._refused = stamp
                log.warning("TLS files changed but cannot serve yet, kept the last: %s", problem)
                return None
            try:
                configuration = self._configuration()
            except OSError as exc:  # replaced again between the check and the read
                log.warning("TLS files changed but cannot be read, kept the last: %s", exc)
                return None
            self._stamp = stamp
            self._refused = None
            log.info("TLS certificate files changed: new connections use them")
            return configuration

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key, *ca = (path.read_bytes() for path in self._files)
        return grpc.ssl_server_certificate_configuration(
            [(key, cert)], root_certificates=ca[0] if ca else None
        )

    def _status(self) -> Stamp:
        stamps = []
        for path in self._files:
            try:
                status = os.stat(path)
            except OSError:
                stamps.append((0, 0, 0))
                continue
            stamps.append((status.st_ino, status.st_size, status.st_mtime_ns))
        return tuple(stamps)
