package dev.runstream.client;

import dev.runstream.v1.Control;
import dev.runstream.v1.ControlAction;
import dev.runstream.v1.CreateRunRequest;
import dev.runstream.v1.Decision;
import dev.runstream.v1.DecisionOption;
import dev.runstream.v1.DecisionRequested;
import dev.runstream.v1.DecisionServiceGrpc;
import dev.runstream.v1.DecisionState;
import dev.runstream.v1.EventKind;
import dev.runstream.v1.GetDecisionRequest;
import dev.runstream.v1.RunCompleted;
import dev.runstream.v1.RunEvent;
import dev.runstream.v1.RunServiceGrpc;
import dev.runstream.v1.RunStarted;
import dev.runstream.v1.StepCompleted;
import dev.runstream.v1.StepProgress;
import dev.runstream.v1.StepSpec;
import dev.runstream.v1.StepStarted;
import dev.runstream.v1.SubmitDecisionRequest;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * runstream-java: a Runstream client in Java, built only from stubs generated from the protos:
 * the parts a Java program needs, to copy. {@code produce} reports a run over the Report stream
 * (idempotency keys, resend on reconnect) and can ask a decision and wait for its answer;
 * {@code watch} follows a run with exact resume; {@code answer} answers a decision.
 *
 * <p>Generate and build with Debian's packages (src/clients/java/build.sh; README "Other
 * languages"), then:
 *
 * <pre>
 *   runstream-java produce --target 127.0.0.1:50051 --ask approve RUN_ID
 *   runstream-java watch --target 127.0.0.1:50051 RUN_ID
 *   runstream-java answer --target 127.0.0.1:50051 RUN_ID approve yes
 * </pre>
 *
 * <p>With TLS and a token: --ca ca.pem --token-file token.jwt (both on every command). A
 * refusal ends the command with exit status 1 and "runstream-java: CODE: message [REASON]" on
 * stderr.
 */
public final class Main {
  /** Each unary call's own deadline; a call that runs out is retried like a cut connection. */
  private static final long CALL_SECONDS = 10;

  private Main() {}

  public static void main(String[] args) throws Exception {
    if (args.length < 1) {
      usage();
    }
    Options options = Options.parse(args);
    try (Connection connection = new Connection(options.target, options.ca, options.tokenFile)) {
      switch (args[0]) {
        case "produce" -> produce(connection, options);
        case "watch" -> watch(connection, options);
        case "answer" -> answer(connection, options);
        default -> usage();
      }
    } catch (StatusRuntimeException error) {
      System.err.println("runstream-java: " + Retry.describe(error));
      System.exit(1);
    }
    System.exit(0); // grpc-java's threads would otherwise keep the JVM up a little longer
  }

  private static void usage() {
    System.err.println(
        "usage: runstream-java produce|watch|answer --target HOST:PORT [--ca FILE]"
            + " [--token-file FILE] ...\n"
            + "  produce [--steps 3] [--progress 4] [--interval 50ms] [--ask DECISION]"
            + " [--key-prefix java] RUN_ID\n"
            + "  watch [--after SEQ] RUN_ID\n"
            + "  answer RUN_ID DECISION CHOICE");
    System.exit(2);
  }

  /** The command line: "--name value" options anywhere, the rest positional. */
  private record Options(
      String target, String ca, String tokenFile, Map<String, String> own, List<String> args) {
    static Options parse(String[] argv) {
      Map<String, String> named = new HashMap<>();
      List<String> positional = new ArrayList<>();
      for (int i = 1; i < argv.length; i++) {
        if (argv[i].startsWith("--") && i + 1 < argv.length) {
          named.put(argv[i].substring(2), argv[++i]);
        } else if (argv[i].startsWith("--")) {
          usage();
        } else {
          positional.add(argv[i]);
        }
      }
      String target = named.getOrDefault("target", "127.0.0.1:50051");
      return new Options(
          target, named.remove("ca"), named.remove("token-file"), named, positional);
    }

    String positional(int index, int count) {
      if (args.size() != count) {
        usage();
      }
      return args.get(index);
    }

    int number(String name, int otherwise) {
      return own.containsKey(name) ? Integer.parseInt(own.get(name)) : otherwise;
    }

    /** A duration written as Go writes them, in milliseconds or seconds: "120ms", "2s". */
    Duration duration(String name, Duration otherwise) {
      String text = own.get(name);
      if (text == null) {
        return otherwise;
      }
      return text.endsWith("ms")
          ? Duration.ofMillis(Long.parseLong(text.substring(0, text.length() - 2)))
          : Duration.ofMillis(Math.round(1000 * Double.parseDouble(text.replaceAll("s$", ""))));
    }
  }

  private static void produce(Connection connection, Options options) throws Exception {
    String runId = options.positional(0, 1);
    int steps = options.number("steps", 3);
    int progress = options.number("progress", 4);
    Duration interval = options.duration("interval", Duration.ofMillis(50));
    String ask = options.own.get("ask");
    String prefix = options.own.getOrDefault("key-prefix", "java");
    RunServiceGrpc.RunServiceBlockingStub runs = RunServiceGrpc.newBlockingStub(connection.channel);

    // The run id is the client's: a CreateRun retried after its first try was applied gets
    // ALREADY_EXISTS, and the run is (possibly) ours. A server-chosen id (run_id empty) is
    // unsafe to retry unless the refusal came with x-runstream-unprocessed in its trailers.
    CreateRunRequest.Builder create =
        CreateRunRequest.newBuilder()
            .setRunId(runId)
            .setWorkflow("java-example")
            .setDisplayName("Java producer");
    for (int i = 1; i <= steps; i++) {
      create.addSteps(StepSpec.newBuilder().setStepId("step-" + i).setName("Step " + i));
    }
    try {
      Retry.call(
          "CreateRun",
          connection,
          () -> runs.withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS).createRun(create.build()),
          Status.Code.ALREADY_EXISTS);
    } catch (StatusRuntimeException error) {
      if (error.getStatus().getCode() != Status.Code.ALREADY_EXISTS) {
        throw error;
      }
      Retry.log("run %s exists: reporting on it", runId);
    }

    Reporter reporter = new Reporter(connection, runId, prefix);
    RunStarted.Builder runStarted = RunStarted.newBuilder().setMessage("from Java");
    send(reporter, RunEvent.newBuilder().setRunStarted(runStarted));
    for (int i = 1; i <= steps; i++) {
      String step = "step-" + i;
      StepStarted.Builder stepStarted = StepStarted.newBuilder().setStepId(step);
      send(reporter, RunEvent.newBuilder().setStepStarted(stepStarted));
      for (int p = 1; p <= progress; p++) {
        StepProgress.Builder event =
            StepProgress.newBuilder()
                .setStepId(step)
                .setPercent(100 * p / (progress + 1))
                .setDetail("part " + p);
        send(reporter, RunEvent.newBuilder().setStepProgress(event));
        Thread.sleep(interval.toMillis());
      }
      StepCompleted.Builder stepCompleted = StepCompleted.newBuilder().setStepId(step);
      send(reporter, RunEvent.newBuilder().setStepCompleted(stepCompleted));
    }
    String summary = steps + " steps";
    if (ask != null) {
      summary += ", " + ask + ": " + askDecision(connection, reporter, runId, ask);
    }
    RunCompleted.Builder runCompleted = RunCompleted.newBuilder().setSummary(summary);
    send(reporter, RunEvent.newBuilder().setRunCompleted(runCompleted));
    reporter.close(Retry.GIVE_UP.multipliedBy(2));
    System.out.printf("completed %s: %s%n", runId, summary);
  }

  /** Sends one event unless the server said the run was cancelled. */
  private static void send(Reporter reporter, RunEvent.Builder event) {
    Control control;
    while ((control = reporter.controls.poll()) != null) {
      if (control.getAction() == ControlAction.CONTROL_ACTION_CANCEL) {
        throw Status.CANCELLED
            .withDescription("run cancelled: " + control.getReason())
            .asRuntimeException();
      }
    }
    reporter.send(event);
  }

  /**
   * Asks a yes/no question and waits for the answer: pushed on the Report stream while it is
   * up; one given while the producer was reconnecting is not pushed again, so it also asks
   * GetDecision every two seconds.
   */
  private static String askDecision(
      Connection connection, Reporter reporter, String runId, String decisionId)
      throws InterruptedException {
    DecisionRequested.Builder question =
        DecisionRequested.newBuilder()
            .setDecisionId(decisionId)
            .setDecisionType("approval")
            .setPrompt("Go on?")
            .addOptions(DecisionOption.newBuilder().setValue("yes").setLabel("Yes"))
            .addOptions(DecisionOption.newBuilder().setValue("no").setLabel("No"));
    reporter.send(RunEvent.newBuilder().setDecisionRequested(question));
    reporter.flush(Retry.GIVE_UP.multipliedBy(2));
    System.out.println("asked " + decisionId);
    System.out.flush();
    DecisionServiceGrpc.DecisionServiceBlockingStub decisions =
        DecisionServiceGrpc.newBlockingStub(connection.channel);
    while (true) {
      Decision pushed = reporter.decisions.poll(2, TimeUnit.SECONDS);
      if (pushed != null && pushed.getDecisionId().equals(decisionId)) {
        System.out.printf(
            "decision %s: %s (%s)%n", decisionId, pushed.getChoice(), pushed.getOutcome());
        return pushed.getChoice();
      }
      if (reporter.failure().isPresent()) {
        throw reporter.failure().get();
      }
      if (pushed == null) {
        try {
          GetDecisionRequest request =
              GetDecisionRequest.newBuilder().setRunId(runId).setDecisionId(decisionId).build();
          Decision read =
              decisions
                  .withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS)
                  .getDecision(request)
                  .getDecision();
          if (read.getState() == DecisionState.DECISION_STATE_RESOLVED) {
            System.out.printf(
                "decision %s: %s (%s, read with GetDecision)%n",
                decisionId, read.getChoice(), read.getOutcome());
            return read.getChoice();
          }
        } catch (StatusRuntimeException unreachable) {
          // The next round asks again; the reporter's own failure ends the wait.
        }
      }
    }
  }

  private static void watch(Connection connection, Options options) {
    String runId = options.positional(0, 1);
    long last =
        Watcher.watch(
            connection,
            runId,
            options.number("after", 0),
            event -> {
              // A kind newer than these stubs has nothing here to show; watch keeps its seq.
              EventKind kind = Watcher.kindOf(event);
              if (kind != EventKind.EVENT_KIND_UNSPECIFIED) {
                System.out.printf("%d %s%n", event.getSeq(), kind);
              }
            });
    System.out.printf("ended after seq %d%n", last);
  }

  private static void answer(Connection connection, Options options) {
    SubmitDecisionRequest request =
        SubmitDecisionRequest.newBuilder()
            .setRunId(options.positional(0, 3))
            .setDecisionId(options.positional(1, 3))
            .setChoice(options.positional(2, 3))
            .build();
    DecisionServiceGrpc.DecisionServiceBlockingStub decisions =
        DecisionServiceGrpc.newBlockingStub(connection.channel);
    // The same answer again returns the same result, so SubmitDecision is safe to retry;
    // ABORTED is an answer here: the decision was closed with another outcome.
    Decision decision =
        Retry.call(
                "SubmitDecision",
                connection,
                () ->
                    decisions
                        .withDeadlineAfter(CALL_SECONDS, TimeUnit.SECONDS)
                        .submitDecision(request),
                Status.Code.ABORTED)
            .getDecision();
    System.out.printf(
        "answered %s: %s (%s)%n",
        decision.getDecisionId(), decision.getChoice(), decision.getOutcome());
  }
}
