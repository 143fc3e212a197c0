"""Runstream server: a gRPC streaming service that records and fans out multi-agent runs.

Layers, outermost first:

* :mod:`runstream_server.api` - thin grpc.aio servicers that translate protobuf requests into
  domain calls and domain errors into precise gRPC status codes.
* :mod:`runstream_server.domain` - run state derived from events, validation, the live fan-out
  hub. Knows nothing of gRPC.
* :mod:`runstream_server.store` - the durable event log behind one small interface
  (:class:`~runstream_server.store.base.EventStore`), with an embedded SQLite backend.
"""
