package dev.runstream.client;

import dev.runstream.v1.Control;
import dev.runstream.v1.Decision;
import dev.runstream.v1.ReportRequest;
import dev.runstream.v1.ReportResponse;
import dev.runstream.v1.ReportServiceGrpc;
import dev.runstream.v1.RunEvent;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.Optional;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;

/**
 * Reports one run's events over a Report stream, with the producer's half of the exact-resume
 * guarantee: every event gets an idempotency key, every batch stays pending until the server
 * acknowledges it (it is then durable), and when the stream fails in a way a retry can cure,
 * the reporter opens a new one and sends every pending batch again under the same keys. The
 * server stores each key once, so nothing is lost or doubled. A failure no retry can cure (an
 * invalid event, a run that ended) stops the reporter with that status.
 *
 * <p>Keys are "&lt;prefix&gt;:&lt;n&gt;", n counting the run's events from 1. They are per run,
 * at most 128 characters, printable (no control characters) and must not start with
 * "runstream." (the server's own). A producer that restarts and reports the same events in the
 * same order under the same prefix gets each one stored once; batch_id only matches acks to
 * batches and plays no part in deduplication.
 *
 * <p>One thread of the reporter's own owns the stream's lifetime (connect, wait for the end,
 * back off, reconnect); grpc-java's threads deliver the responses. Everything they share is
 * guarded by the reporter's monitor, which also serialises writes to the stream, as grpc-java's
 * StreamObserver requires.
 */
final class Reporter {
  /**
   * The answers to this run's decisions the server pushes (while the stream is up: a producer
   * that was away asks GetDecision). Dropped when nobody reads and the queue is full.
   */
  final BlockingQueue<Decision> decisions = new ArrayBlockingQueue<>(16);

  /** PAUSE, RESUME and CANCEL; dropped likewise. */
  final BlockingQueue<Control> controls = new ArrayBlockingQueue<>(16);

  private final Connection connection;
  private final ReportServiceGrpc.ReportServiceStub client;
  private final String runId;
  private final String prefix;
  private final Thread owner;

  // Guarded by this.
  private final Deque<ReportRequest> pending = new ArrayDeque<>(); // unacknowledged, in order
  private ClientCallStreamObserver<ReportRequest> stream; // null while reconnecting
  private int events; // events given keys so far
  private long batchId;
  private boolean closing;
  private StatusRuntimeException failure; // final: the reporter stopped
  private boolean ended; // the server ended the stream OK after close()

  /** Attaches to a created run and starts the stream; call {@link #close} when done. */
  Reporter(Connection connection, String runId, String prefix) {
    this.connection = connection;
    this.client = ReportServiceGrpc.newStub(connection.channel);
    this.runId = runId;
    this.prefix = prefix;
    this.owner = new Thread(this::run, "reporter " + runId);
    owner.setDaemon(true);
    owner.start();
  }

  /**
   * Gives each event its key, queues the batch and sends it without waiting for the
   * acknowledgement ({@link #flush} waits). A batch holds at most 1,000 events and 4 MiB
   * encoded, each event at most 256 KiB: the server refuses larger ones, and no resend would
   * help.
   */
  synchronized void send(RunEvent.Builder... batch) {
    if (failure != null) {
      throw failure;
    }
    ReportRequest.Builder request = ReportRequest.newBuilder().setRunId(runId);
    for (RunEvent.Builder event : batch) {
      events++;
      request.addEvents(event.setIdempotencyKey(prefix + ":" + events));
    }
    ReportRequest sent = request.setBatchId(++batchId).build();
    pending.addLast(sent);
    if (stream != null) {
      // No flow control here: grpc-java buffers what the transport cannot take yet, and a
      // producer that outruns the server for long would watch stream.isReady().
      stream.onNext(sent);
    }
  }

  /** Waits until every batch sent so far is acknowledged (durable), or the reporter fails. */
  synchronized void flush(Duration timeout) throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (failure == null && !pending.isEmpty()) {
      long left = deadline - System.nanoTime();
      if (left <= 0) {
        throw Status.DEADLINE_EXCEEDED
            .withDescription(pending.size() + " batches still unacknowledged")
            .asRuntimeException();
      }
      wait(left / 1_000_000 + 1);
    }
    if (failure != null) {
      throw failure;
    }
  }

  /** Flushes, then closes the stream; the server ends it OK. */
  void close(Duration timeout) throws InterruptedException {
    try {
      flush(timeout);
    } catch (StatusRuntimeException error) {
      stop(error);
      throw error;
    }
    synchronized (this) {
      closing = true;
      if (stream != null) {
        stream.onCompleted();
      }
    }
    owner.join(timeout.toMillis());
    synchronized (this) {
      if (!ended) {
        Status late = Status.DEADLINE_EXCEEDED.withDescription("the stream did not end");
        stop(late.asRuntimeException());
        throw failure;
      }
    }
  }

  /** The reporter's failure, once it has stopped for good. */
  synchronized Optional<StatusRuntimeException> failure() {
    return Optional.ofNullable(failure);
  }

  private synchronized void stop(StatusRuntimeException error) {
    if (failure == null) {
      failure = error;
    }
    if (stream != null) {
      stream.cancel("the reporter stopped", null);
      stream = null;
    }
    notifyAll();
  }

  /**
   * The owner thread: opens a stream, waits for its end, and reconnects when it failed with a
   * status a retry can cure.
   */
  private void run() {
    Retry.Attempts attempts = new Retry.Attempts();
    while (true) {
      Call call = new Call();
      client.report(call); // calls call.beforeStart with the request side
      if (!attach(call)) {
        return;
      }
      StatusRuntimeException error = call.end.join(); // null: ended OK
      synchronized (this) {
        if (stream == call.requests) {
          stream = null;
        }
        if (failure != null) {
          return;
        }
        if (error == null) {
          if (closing) {
            ended = true;
          } else {
            stop(
                Status.UNKNOWN
                    .withDescription("the server ended the Report stream before it was closed")
                    .asRuntimeException());
          }
          return;
        }
      }
      if (call.accepted) {
        attempts.succeeded();
      }
      Optional<Duration> wait = attempts.next(error, call.accepted);
      if (wait.isEmpty()) {
        stop(error);
        return;
      }
      Retry.log(
          "report stream: %s; resending what is not acknowledged in %d ms",
          Retry.describe(error), wait.get().toMillis());
      Retry.sleep(wait.get());
      connection.reconnectNow();
    }
  }

  /** Sends every pending batch on a new stream, in order; false when the reporter stopped. */
  private synchronized boolean attach(Call call) {
    if (failure != null) {
      call.requests.cancel("the reporter stopped", null);
      return false;
    }
    // The first message attaches the stream to the run: send it even with no batch pending.
    if (pending.isEmpty()) {
      call.requests.onNext(ReportRequest.newBuilder().setRunId(runId).build());
    }
    for (ReportRequest batch : pending) {
      call.requests.onNext(batch);
    }
    if (closing) {
      call.requests.onCompleted();
    }
    stream = call.requests;
    return true;
  }

  /**
   * Takes one ReportResponse: "exactly one field is set", plain fields rather than a oneof, so
   * each is tested in turn, and a message with none this client knows (a field added later) is
   * skipped.
   */
  private void handle(ReportResponse response) {
    if (response.hasAck()) {
      synchronized (this) {
        // Acknowledgements come in the order the batches were sent.
        ReportRequest first = pending.peekFirst();
        if (first != null && first.getBatchId() == response.getAck().getBatchId()) {
          pending.removeFirst();
        }
        notifyAll();
      }
    } else if (response.hasDecision()) {
      decisions.offer(response.getDecision());
    } else if (response.hasControl()) {
      controls.offer(response.getControl());
    }
  }

  /** One Report call: its request side, whether a message came, and how it ended. */
  private final class Call implements ClientResponseObserver<ReportRequest, ReportResponse> {
    final CompletableFuture<StatusRuntimeException> end = new CompletableFuture<>();
    ClientCallStreamObserver<ReportRequest> requests;
    volatile boolean accepted;

    @Override
    public void beforeStart(ClientCallStreamObserver<ReportRequest> requests) {
      this.requests = requests;
    }

    @Override
    public void onNext(ReportResponse response) {
      accepted = true;
      handle(response);
    }

    @Override
    public void onError(Throwable error) {
      // Writes to a call that ended are dropped, but stop sending to it now.
      synchronized (Reporter.this) {
        if (stream == requests) {
          stream = null;
        }
      }
      end.complete(
          error instanceof StatusRuntimeException status
              ? status
              : Status.fromThrowable(error)
                  .asRuntimeException(Status.trailersFromThrowable(error)));
    }

    @Override
    public void onCompleted() {
      end.complete(null);
    }
  }
}
