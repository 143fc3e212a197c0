package dev.runstream.client;

import dev.runstream.v1.EventKind;
import dev.runstream.v1.RunEvent;
import dev.runstream.v1.RunServiceGrpc;
import dev.runstream.v1.WatchRunRequest;
import dev.runstream.v1.WatchRunResponse;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.Iterator;
import java.util.function.Consumer;

/**
 * Follows a run to its end with exact resume: every event handled once, in seq order, whatever
 * happens to the connection.
 */
final class Watcher {
  private Watcher() {}

  /**
   * Follows a run from after {@code afterSeq} to its end, calling {@code handle} once for each
   * event in seq order, and returns the last seq seen. When the stream fails in a way a retry
   * can cure (a cut connection, a server restart, a draining server), it opens a new one asking
   * for the events after the last seq it handled. It returns when the run has ended (the server
   * ends the stream OK after the run's terminal event) and throws the status no retry can cure.
   */
  static long watch(
      Connection connection, String runId, long afterSeq, Consumer<RunEvent> handle) {
    RunServiceGrpc.RunServiceBlockingStub runs = RunServiceGrpc.newBlockingStub(connection.channel);
    long cursor = afterSeq;
    Retry.Attempts attempts = new Retry.Attempts();
    while (true) {
      // Whether the server had taken the call: a message came.
      boolean accepted = false;
      try {
        WatchRunRequest request =
            WatchRunRequest.newBuilder().setRunId(runId).setAfterSeq(cursor).build();
        Iterator<WatchRunResponse> stream = runs.watchRun(request);
        while (stream.hasNext()) {
          WatchRunResponse response = stream.next();
          accepted = true;
          attempts.succeeded();
          // "Exactly one field is set": events (a repeated field, set = non-empty), snapshot
          // (only with include_snapshot) or heartbeat; a message with none this client knows
          // is skipped.
          for (RunEvent event : response.getEventsList()) {
            handle.accept(event);
            cursor = event.getSeq();
          }
        }
        return cursor;
      } catch (StatusRuntimeException error) {
        Duration wait = attempts.next(error, accepted).orElseThrow(() -> error);
        Retry.log(
            "watch: %s; resuming after seq %d in %d ms",
            Retry.describe(error), cursor, wait.toMillis());
        Retry.sleep(wait);
        connection.reconnectNow();
      }
    }
  }

  /**
   * An event's kind: the EventKind value has the number of the payload field that is set
   * (event.proto promises it), so the oneof's case gives it without a table. A kind newer than
   * this client's stubs has no case here: UNSPECIFIED; skip the event, keep its seq.
   */
  static EventKind kindOf(RunEvent event) {
    EventKind kind = EventKind.forNumber(event.getPayloadCase().getNumber());
    return kind == null ? EventKind.EVENT_KIND_UNSPECIFIED : kind;
  }
}
