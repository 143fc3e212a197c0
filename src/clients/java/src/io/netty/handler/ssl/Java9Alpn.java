package io.netty.handler.ssl;

import java.util.List;

/**
 * ALPN for TLS with the JDK's own SSL engine, which Debian's netty (4.1.48) lost: it removes
 * JdkAlpnApplicationProtocolNegotiator (for its Jetty ALPN half, which Debian does not package),
 * so grpc-java's TlsChannelCredentials and GrpcSslContexts fail there with
 * UnsupportedOperationException "JDK provider does not support ALPN protocol", and neither
 * netty-tcnative (OpenSSL) nor Conscrypt is packaged to take its place. gRPC needs ALPN to
 * agree on HTTP/2. The Java 9+ half is still in the jar, package-private: Java9SslEngine,
 * which sets the protocols on the JDK engine and reports the one chosen. This class, in
 * netty's package on the class path, builds the negotiator that uses it.
 *
 * <p>Not needed with Maven Central's netty or grpc-netty-shaded: use TlsChannelCredentials.
 */
public final class Java9Alpn {
  private Java9Alpn() {}

  /** A negotiator offering the given protocols ("h2"), failing the handshake on no match. */
  @SuppressWarnings("deprecation") // JdkApplicationProtocolNegotiator: deprecated, still used
  public static JdkApplicationProtocolNegotiator offering(String... protocols) {
    return new JdkBaseApplicationProtocolNegotiator(
        (engine, negotiator, isServer) -> new Java9SslEngine(engine, negotiator, isServer),
        JdkBaseApplicationProtocolNegotiator.FAIL_SELECTOR_FACTORY,
        JdkBaseApplicationProtocolNegotiator.FAIL_SELECTION_LISTENER_FACTORY,
        List.of(protocols));
  }
}
