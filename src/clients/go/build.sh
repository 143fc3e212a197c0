#!/usr/bin/env bash
# Generates the Go stubs from protos/ with plain protoc and builds runstream-go against
# Debian 12's Go packages, in GOPATH mode (their libraries are a GOPATH tree under
# /usr/share/gocode; module mode would look for modules Debian does not package).
#   src/clients/go/build.sh [OUT]     OUT defaults to build/go; the binary is OUT/runstream-go
# Needs: golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-google-genproto-dev
#   golang-github-golang-protobuf-1-5-dev protoc-gen-go protoc-gen-go-grpc protobuf-compiler
# (scripts/setup.sh test installs them; not golang-goprotobuf-dev, which conflicts).
# The stubs are generated at each build rather than committed: it takes a fifth of a second,
# and the same protoc and plugins always write the same code.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
out="$(mkdir -p "${1:-$root/build/go}" && cd "${1:-$root/build/go}" && pwd)"
gopath="$out/gopath"

# The protos' go_package puts the stubs at runstream.dev/gen/go/runstream/v1 under GOPATH.
rm -rf "$gopath/src/runstream.dev"
mkdir -p "$gopath/src"
protoc -I "$root/protos" --go_out="$gopath/src" --go-grpc_out="$gopath/src" \
  "$root"/protos/runstream/v1/*.proto

cd "$root/src/clients/go"
GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" go build -o "$out/runstream-go" .
