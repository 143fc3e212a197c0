"""The server's certificate files, followed as they change (see auth/followed.py): a
certificate renewed in place serves the next connection without a restart.

gRPC asks :meth:`CertificateFiles.fetch` at each new TLS handshake whether the certificate
changed. Connections already open keep the certificate they were made with, as TLS does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import grpc

from runstream_server.auth.followed import FollowedFiles

__all__ = ["CertificateFiles"]

log = logging.getLogger("runstream.auth")


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
        self._followed = FollowedFiles(self._files)

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
        stamp = self._followed.changed()
        if stamp is None:
            return None
        problem = self._problem()
        if problem is not None:
            self._followed.refuse(stamp)
            log.warning("TLS files changed but cannot serve yet, kept the last: %s", problem)
            return None
        try:
            configuration = self._configuration()
        except OSError as exc:  # replaced again between the check and the read
            log.warning("TLS files changed but cannot be read, kept the last: %s", exc)
            return None
        self._followed.take(stamp)
        log.info("TLS certificate files changed: new connections use them")
        return configuration

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key, *ca = (path.read_bytes() for path in self._files)
        return grpc.ssl_server_certificate_configuration(
            [(key, cert)], root_certificates=ca[0] if ca else None
        )
