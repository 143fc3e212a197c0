"""Identity and access: bearer JWTs, roles per RPC, tenants, TLS and per-caller limits.

The domain sees only :mod:`~runstream_server.auth.principal` (who is calling, which tenant
they may see); tokens, the interceptor and TLS belong to the gRPC edge.
"""

from runstream_server.auth.principal import Principal, Role
from runstream_server.auth.tokens import AuthConfig, TokenError, TokenVerifier, mint_token

__all__ = ["AuthConfig", "Principal", "Role", "TokenError", "TokenVerifier", "mint_token"]
