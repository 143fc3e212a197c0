"""Runstream server: a gRPC streaming service that records and fans out multi-agent runs.

Layers, outermost first:

* :mod:`runstream_server.api` - thin grpc.aio servicers that translate protobuf requests into
  domain calls, and their results back (:mod:`runstream_server.rpc` maps domain errors to
  precise gRPC status codes).
* :mod:`runstream_server.domain` - run state derived from events, validation, the live fan-out
  hub. Knows nothing of gRPC.
* :mod:`runstream_server.store` - the durable event log behind one small interface
  (:class:`~runstream_server.store.base.EventStore`), with an embedded SQLite backend.

Beside them, at the gRPC edge: :mod:`runstream_server.auth` (tokens, roles, TLS, per-caller
limits) and :mod:`runstream_server.observability`. Like the servicers, they build on
:mod:`runstream_server.rpc` (handler rewriting, the errors interceptor). Any layer may import
:mod:`runstream_server.errors` and :mod:`runstream_server.principal` (who is calling). No two
packages import each other, directly or around a loop (tests/contract/test_layers.py).
"""
