"""Identity and access: bearer JWTs, roles per RPC, tenants, TLS and per-caller limits.

Tokens, the interceptor and TLS belong to the gRPC edge. The principal they bind, and the
roles a token grants, are :mod:`~runstream_server.principal`, which the domain imports too.
"""

from runstream_server.auth.tokens import AuthConfig, TokenError, TokenVerifier, mint_token

__all__ = ["AuthConfig", "TokenError", "TokenVerifier", "mint_token"]
