"""The gRPC plumbing that the servicers (api), auth and observability all build on.

Handler rewriting (:mod:`~runstream_server.rpc.handlers`) and the one mapping of errors to
statuses and their trailers (:mod:`~runstream_server.rpc.errors`). It imports only
:mod:`~runstream_server.errors` and :mod:`~runstream_server.principal`, so the layers above
it can share it without importing one another.
"""
