package dev.runstream.client;

import io.grpc.CallCredentials;
import io.grpc.ChannelCredentials;
import io.grpc.CompositeChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.netty.NettySslContextChannelCredentials;
import io.netty.handler.ssl.IdentityCipherSuiteFilter;
import io.netty.handler.ssl.Java9Alpn;
import io.netty.handler.ssl.JdkSslClientContext;
import io.netty.handler.ssl.SslContext;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLException;

/**
 * A channel to the server with the settings the Python SDK uses.
 *
 * <ul>
 *   <li>Keepalive: a ping every 30 s while a call is open, the connection dropped when one is not
 *       answered in 10 s, so a watch on a server that froze or behind a network that went silent
 *       ends with UNAVAILABLE (and resumes) rather than waiting for ever. The server accepts
 *       pings every 5 s or more; pinging more often gets the connection closed (GOAWAY
 *       "too_many_pings").
 *   <li>Reconnect backoff: grpc-java has no public setting for it (1 s growing to 120 s), and a
 *       call made while the channel waits out that backoff fails at once with UNAVAILABLE. The
 *       retry loops call {@link #reconnectNow} before each new try, so the channel reconnects
 *       on the client's own schedule (250 ms doubling to 2 s), not minutes after a restart.
 *   <li>Messages: the server takes and sends at most 4 MiB per message, grpc-java's default
 *       receive limit; the server keeps its own responses under it.
 * </ul>
 */
final class Connection implements AutoCloseable {
  final ManagedChannel channel;

  /**
   * @param target the server, HOST:PORT
   * @param caFile PEM CA that signed the server's certificate: TLS; null: plaintext
   * @param tokenFile file holding a JWT, sent as "authorization: Bearer &lt;jwt&gt;"; null: none
   */
  Connection(String target, String caFile, String tokenFile) throws IOException {
    ChannelCredentials credentials =
        caFile == null ? InsecureChannelCredentials.create() : tls(new File(caFile));
    if (tokenFile != null) {
      credentials = CompositeChannelCredentials.create(credentials, new BearerFile(tokenFile));
    }
    channel =
        Grpc.newChannelBuilder(target, credentials)
            .keepAliveTime(30, TimeUnit.SECONDS)
            .keepAliveTimeout(10, TimeUnit.SECONDS)
            .build();
  }

  /**
   * TLS trusting the CA in {@code caFile} and checking the server's name. With Maven Central's
   * jars this is {@code TlsChannelCredentials.newBuilder().trustManager(caFile).build()}; with
   * Debian's netty, the JDK engine's ALPN comes from {@link Java9Alpn}.
   */
  @SuppressWarnings("deprecation") // for SslContextBuilder, which takes no JDK negotiator
  private static ChannelCredentials tls(File caFile) throws SSLException {
    SslContext context =
        new JdkSslClientContext(
            caFile,
            null, // the trust manager made from caFile
            null, // the JDK's default cipher suites
            IdentityCipherSuiteFilter.INSTANCE,
            Java9Alpn.offering("h2"),
            0, // the default session cache size and timeout
            0);
    return NettySslContextChannelCredentials.create(context);
  }

  /** Lets the channel try to connect at once, skipping what is left of its reconnect backoff. */
  void reconnectNow() {
    channel.resetConnectBackoff();
  }

  @Override
  public void close() {
    channel.shutdownNow();
    try {
      channel.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException interrupted) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * Sends the token in its file with every call, read again each time, so a token renewed on
   * disk is used from the next call on: a stream the server ends at its token's expiry
   * (UNAUTHENTICATED) resumes with the fresh one. Unlike grpc-go, grpc-java sends call
   * credentials over plaintext too. Keep plaintext to loopback (`runstream serve` on
   * 127.0.0.1) or a sidecar: the token is a password.
   */
  private static final class BearerFile extends CallCredentials {
    private static final Metadata.Key<String> AUTHORIZATION =
        Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
    private final Path path;

    BearerFile(String path) {
      this.path = Path.of(path);
    }

    @Override
    public void applyRequestMetadata(
        RequestInfo request, Executor executor, MetadataApplier applier) {
      // Called on a network thread: read the file on the executor grpc-java gives for that.
      executor.execute(
          () -> {
            try {
              Metadata headers = new Metadata();
              headers.put(AUTHORIZATION, "Bearer " + Files.readString(path).strip());
              applier.apply(headers);
            } catch (IOException unreadable) {
              applier.fail(
                  Status.UNAUTHENTICATED
                      .withDescription("cannot read the token file " + path)
                      .withCause(unreadable));
            }
          });
    }

    @Override
    public void thisUsesUnstableApi() {}
  }
}
