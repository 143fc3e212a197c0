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
# The stubs are generated at each build rather than committed, as for Go. Compiling their
# ~200 files is most of the build's 7 s; javac runs with the C1 compiler only, which halves
# that (the run is too short for C2's optimisations to pay for themselves).
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

# java_package dev.runstream.v1 with java_multiple_files: one class per message.
rm -rf "$out/gen" "$out/classes"
mkdir -p "$out/gen" "$out/classes"
protoc -I "$root/protos" --java_out="$out/gen" --grpc-java_out="$out/gen" \
  --plugin=protoc-gen-grpc-java="$(command -v grpc_java_plugin)" "$root"/protos/runstream/v1/*.proto

find "$out/gen" "$root/src/clients/java/src" -name '*.java' >"$out/sources.txt"
javac -J-XX:TieredStopAtLevel=1 -J-XX:+UseSerialGC -proc:none -nowarn -Xlint:none \
  -encoding UTF-8 -cp "$classpath" -d "$out/classes" @"$out/sources.txt"

# The launcher: the JVM's C1 compiler alone and the serial collector start it quicker, which
# suits a command that runs seconds; a long-lived producer would drop both flags.
cat >"$out/runstream-java" <<LAUNCHER
#!/bin/sh
exec java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp '$out/classes:$classpath' \\
  dev.runstream.client.Main "\$@"
LAUNCHER
chmod +x "$out/runstream-java"
