package dev.runstream.client;

import com.google.protobuf.Any;
import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.UnknownFieldSet;
import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalTime;
import java.time.temporal.ChronoUnit;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.Supplier;

/**
 * Which failures are worth another try, and when. These are the README's rules ("Other
 * languages", Retrying) for the streams and the idempotent calls; nothing else is retried.
 *
 * <p>A status carrying google.rpc.RetryInfo (RESOURCE_EXHAUSTED: too many watchers or streams)
 * is retried after its delay. Otherwise the code decides:
 *
 * <ul>
 *   <li>UNAVAILABLE (server unreachable, restarting, draining, store briefly unable to write),
 *       CANCELLED that this client did not ask for (a server killed mid-stream),
 *       DEADLINE_EXCEEDED, INTERNAL and UNKNOWN (how some transports report a cut stream),
 *       ABORTED (a proxy's dropped upstream): the connection failed, not the request.
 *   <li>UNAUTHENTICATED on a stream that had delivered a message: the token expired during the
 *       stream; the next call reads a fresh one. Refused at once, it is final.
 *   <li>Everything else (INVALID_ARGUMENT, FAILED_PRECONDITION, NOT_FOUND, PERMISSION_DENIED,
 *       OUT_OF_RANGE, RESOURCE_EXHAUSTED without RetryInfo: an oversized event or batch, ...)
 *       gets the same answer however often it is sent: resending it would loop for ever.
 * </ul>
 */
final class Retry {
  /** A draining server refuses until 250 ms pass with no call. */
  static final Duration FIRST_DELAY = Duration.ofMillis(250);

  static final Duration MAX_DELAY = Duration.ofSeconds(2);

  /** The Python SDK's reconnect_timeout: after a minute of failures, give up. */
  static final Duration GIVE_UP = Duration.ofSeconds(60);

  private static final Set<Status.Code> CONNECTION_FAILED =
      Set.of(
          Status.Code.UNAVAILABLE,
          Status.Code.CANCELLED,
          Status.Code.DEADLINE_EXCEEDED,
          Status.Code.INTERNAL,
          Status.Code.UNKNOWN,
          Status.Code.ABORTED);

  private Retry() {}

  /**
   * The least wait before trying again after {@code error}, or empty when no retry can cure it.
   * {@code accepted}: the failed call had delivered a message.
   */
  static Optional<Duration> retryable(StatusRuntimeException error, boolean accepted) {
    Optional<RetryInfo> info = detail(error, RetryInfo.class);
    if (info.isPresent()) {
      com.google.protobuf.Duration delay = info.get().getRetryDelay();
      Duration wait = Duration.ofSeconds(delay.getSeconds(), delay.getNanos());
      return Optional.of(wait.compareTo(FIRST_DELAY) > 0 ? wait : FIRST_DELAY);
    }
    Status.Code code = error.getStatus().getCode();
    if (CONNECTION_FAILED.contains(code) || (code == Status.Code.UNAUTHENTICATED && accepted)) {
      return Optional.of(Duration.ZERO);
    }
    return Optional.empty();
  }

  /**
   * The wait before attempt n (0, 1, ...) after a failure: 250 ms doubling to 2 s, at least
   * {@code floor}, plus up to 20 % so that many clients cut at once do not come back at once.
   */
  static Duration backoff(int attempt, Duration floor) {
    Duration delay = attempt < 4 ? FIRST_DELAY.multipliedBy(1L << attempt) : MAX_DELAY;
    if (floor.compareTo(delay) > 0) {
      delay = floor;
    }
    long jitter = ThreadLocalRandom.current().nextLong(delay.toMillis() / 5 + 1);
    return delay.plusMillis(jitter);
  }

  /**
   * Makes an idempotent unary call until it succeeds, fails for good, or a minute of failures
   * passed. {@code answers} lists codes this call treats as answers on top of retryable's: they
   * are thrown at once. Before each new try the channel drops its own reconnect backoff (see
   * {@link Connection}), so the client's schedule, not grpc-java's, sets the pace. Each retry is
   * logged under {@code name}, as the watcher and the reporter log theirs: a producer started
   * before its server (or at the wrong address) said nothing for the whole minute.
   */
  static <T> T call(
      String name, Connection connection, Supplier<T> call, Status.Code... answers) {
    Attempts attempts = new Attempts();
    while (true) {
      try {
        return call.get();
      } catch (StatusRuntimeException error) {
        for (Status.Code answer : answers) {
          if (error.getStatus().getCode() == answer) {
            throw error;
          }
        }
        Duration wait = attempts.next(error, false).orElseThrow(() -> error);
        log("%s: %s; trying again in %d ms", name, describe(error), wait.toMillis());
        sleep(wait);
        connection.reconnectNow();
      }
    }
  }

  /** The failures in a row of one call or stream: when to try again, and when to give up. */
  static final class Attempts {
    private int failures;
    private Instant failingSince;

    /** The call went through (a stream delivered a message): the next failure is a first. */
    void succeeded() {
      failures = 0;
      failingSince = null;
    }

    /**
     * The wait before trying again after {@code error}; empty when no retry can cure it or a
     * minute of failures passed. {@code accepted}: the failed call had delivered a message.
     */
    Optional<Duration> next(StatusRuntimeException error, boolean accepted) {
      Optional<Duration> floor = retryable(error, accepted);
      if (failingSince == null) {
        failingSince = Instant.now();
      }
      if (floor.isEmpty() || Duration.between(failingSince, Instant.now()).compareTo(GIVE_UP) > 0) {
        return Optional.empty();
      }
      return Optional.of(backoff(failures++, floor.get()));
    }
  }

  static void sleep(Duration wait) {
    try {
      Thread.sleep(wait.toMillis());
    } catch (InterruptedException interrupted) {
      Thread.currentThread().interrupt();
      throw Status.CANCELLED.withDescription("interrupted").asRuntimeException();
    }
  }

  /**
   * A status detail of the given type from the google.rpc.Status in the error's
   * grpc-status-details-bin trailer, if the server sent one.
   */
  static <T extends com.google.protobuf.Message> Optional<T> detail(
      Throwable error, Class<T> type) {
    com.google.rpc.Status status = StatusProto.fromThrowable(error);
    if (status == null) {
      return Optional.empty();
    }
    for (Any any : status.getDetailsList()) {
      if (any.is(type)) {
        try {
          return Optional.of(any.unpack(type));
        } catch (InvalidProtocolBufferException undecodable) {
          return Optional.empty();
        }
      }
    }
    return Optional.empty();
  }

  /**
   * "CODE: message", with the refusal's reason when the server gave one (google.rpc.ErrorInfo:
   * TOKEN_MISSING, RUN_ENDED, ...; README "Error details for programs").
   */
  static String describe(StatusRuntimeException error) {
    Status status = error.getStatus();
    String text = status.getCode() + ": " + status.getDescription();
    if (status.getCause() != null) {
      // grpc-java's own failures keep their reason here: a certificate without the server's
      // name is UNAVAILABLE "io exception", caused by "No subject alternative names ...".
      text += " (" + status.getCause() + ")";
    }
    Optional<String> reason = reason(error);
    return reason.isPresent() ? text + " [" + reason.get() + "]" : text;
  }

  /**
   * The reason of the google.rpc.ErrorInfo detail. Debian's proto-google-common-protos (1.16)
   * predates ErrorInfo, so it is read from the encoding: reason is its field 1, a string. (With
   * a newer jar: {@code detail(error, com.google.rpc.ErrorInfo.class)}, the name qualified, as
   * dev.runstream.v1.ErrorInfo is a run's error.)
   */
  static Optional<String> reason(Throwable error) {
    com.google.rpc.Status status = StatusProto.fromThrowable(error);
    if (status == null) {
      return Optional.empty();
    }
    for (Any any : status.getDetailsList()) {
      if (any.getTypeUrl().endsWith("/google.rpc.ErrorInfo")) {
        try {
          UnknownFieldSet fields = UnknownFieldSet.parseFrom(any.getValue());
          return fields.getField(1).getLengthDelimitedList().stream()
              .findFirst()
              .map(ByteString::toStringUtf8);
        } catch (InvalidProtocolBufferException undecodable) {
          return Optional.empty();
        }
      }
    }
    return Optional.empty();
  }

  /** A line on stderr with the time, as Go's log package writes it. */
  static void log(String format, Object... args) {
    LocalTime now = LocalTime.now().truncatedTo(ChronoUnit.MICROS);
    System.err.println(now + " " + String.format(format, args));
  }
}
