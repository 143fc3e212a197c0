"""Thin grpc.aio servicers: protobuf in, domain call, protobuf (or pre-encoded bytes) out."""
