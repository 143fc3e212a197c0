#!/usr/bin/env bash
# Generates the Java stubs from protos/ with protoc and grpc_java_plugin and compiles
# runstream-java against Debian 12's jars in /usr/share/java: no Maven, no Gradle, no network.
#   src/clients/java/build.sh [OUT]     OUT defaults to build/java; the launcher is
#                                       OUT/runstream-java (classes in OUT/classes)
# Needs: default-jdk-headless protobuf-compiler protobuf-compiler-grpc-java-plugin
#   libgrpc-java libprotobuf-java libgoogle-common-protos-java libnetty-java libperfmark-java
#   libgeronimo-annotation-1.3-spec-java (scripts/setup.sh test installs them). libgrpc-java
# depends on neither netty nor perfmark, hence the last two; netty-all.jar is an empty
# aggregator, hence the per-module jars below; and the stubs are annotated
# @javax.annotation.Generated, which the JDK dropped in 11: geronimo-annotation has it.
# The stubs are generated rather than committed, as for Go. Compiling their ~200 files takes
# 6 s on two idle cores, with javac on the C1 compiler alone, which halves it (the run is too
# short for C2's optimisations to pay for themselves); they are cached (below), and a build
# that finds them takes 1 to 2 s.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
out="$(mkdir -p "${1:-$root/build/java}" && cd "${1:-$root/build/java}" && pwd)"

jars=(grpc-api grpc-context grpc-core grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub
  protobuf proto-google-common-protos guava perfmark-api jsr305
  error_prone_annotations geronimo-annotation-1.3-spec netty-buffer netty-codec
  netty-codec-http netty-codec-http2 netty-codec-socks netty-common netty-handler
  netty-handler-proxy netty-resolver netty-transport netty-transport-native-unix-common)
# Exit status 3 names what is missing (the tests skip on it outside CI); 1 is a failed build.
missing=()
for tool in java javac protoc grpc_java_plugin; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
classpath=""
for jar in "${jars[@]}"; do
  [ -f "/usr/share/java/$jar.jar" ] || missing+=("/usr/share/java/$jar.jar")
  classpath+="${classpath:+:}/usr/share/java/$jar.jar"
done
if [ "${#missing[@]}" -ne 0 ]; then
  echo "${missing[*]} (Debian packages: see src/clients/java/build.sh)" >&2
  exit 3
fi

# The stubs' classes depend on nothing but the protos and the tools, so they are compiled
# once for each version of those and kept, as Go keeps its build cache: a build that finds
# them compiles the client's own files alone. Entries unused for a week are removed.
cache="${RUNSTREAM_JAVA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runstream/java-stubs}"
key="$({
  cat "$root"/protos/runstream/v1/*.proto
  protoc --version
  javac -version 2>&1
  sha256sum <"$(command -v grpc_java_plugin)"
  for jar in "${jars[@]}"; do readlink -f "/usr/share/java/$jar.jar"; done
} | sha256sum | cut -c1-16)"
stubs="$cache/$key"
fast_javac=(javac -J-XX:TieredStopAtLevel=1 -J-XX:+UseSerialGC -proc:none -nowarn -encoding UTF-8)
mkdir -p "$cache"
if [ ! -d "$stubs" ]; then
  work="$(mktemp -d "$cache/.build-XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  mkdir "$work/gen" "$work/classes"
  # java_package dev.runstream.v1 with java_multiple_files: one class per message.
  protoc -I "$root/protos" --java_out="$work/gen" --grpc-java_out="$work/gen" \
    --plugin=protoc-gen-grpc-java="$(command -v grpc_java_plugin)" \
    "$root"/protos/runstream/v1/*.proto
  find "$work/gen" -name '*.java' >"$work/sources.txt"
  "${fast_javac[@]}" -cp "$classpath" -d "$work/classes" @"$work/sources.txt"
  # A build running at the same time may have put its copy there first: keep that one.
  mv -T "$work" "$stubs" 2>/dev/null || true
fi
touch "$stubs"
find "$cache" -mindepth 1 -maxdepth 1 -mtime +7 -exec rm -rf {} +

# OUT stands alone: the stubs (sources and classes) copied in, the client compiled beside them.
rm -rf "$out/gen" "$out/classes"
cp -r "$stubs/gen" "$stubs/classes" "$out/"
find "$root/src/clients/java/src" -name '*.java' >"$out/sources.txt"
"${fast_javac[@]}" -cp "$out/classes:$classpath" -d "$out/classes" @"$out/sources.txt"

# The launcher: the JVM's C1 compiler alone and the serial collector start it quicker, which
# suits a command that runs seconds; a long-lived producer would drop both flags.
cat >"$out/runstream-java" <<LAUNCHER
#!/bin/sh
exec java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp '$out/classes:$classpath' \\
  dev.runstream.client.Main "\$@"
LAUNCHER
chmod +x "$out/runstream-java"
