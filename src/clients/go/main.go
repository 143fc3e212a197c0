// Command runstream-go is a Runstream client in Go, built only from stubs generated from the
// protos: the parts a Go program needs, to copy. `produce` reports a run over the Report
// stream (idempotency keys, resend on reconnect) and can ask a decision and wait for its
// answer; `watch` follows a run with exact resume; `answer` answers a decision.
//
// Generate and build with Debian's packages (src/clients/go/build.sh; README "Other
// languages"), then:
//
//	runstream-go produce -target 127.0.0.1:50051 -ask approve RUN_ID
//	runstream-go watch -target 127.0.0.1:50051 RUN_ID
//	runstream-go answer -target 127.0.0.1:50051 RUN_ID approve yes
//
// With TLS and a token: -ca ca.pem -token-file token.jwt (both on every command).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	rs "runstream.dev/gen/go/runstream/v1"
)

func main() {
	log.SetFlags(log.Lmicroseconds)
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch command, args := os.Args[1], os.Args[2:]; command {
	case "produce":
		err = produce(args)
	case "watch":
		err = watch(args)
	case "answer":
		err = answer(args)
	default:
		usage()
	}
	if err != nil {
		st := status.Convert(err)
		fmt.Fprintf(os.Stderr, "runstream-go: %s: %s\n", st.Code(), st.Message())
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: runstream-go produce|watch|answer -target HOST:PORT [-ca FILE] [-token-file FILE] ... (-h for each)")
	os.Exit(2)
}

// command parses a subcommand's flags (the connection's and its own) and its operands, named
// in `operands` ("RUN_ID DECISION CHOICE"), and connects. The usage names the operands: flag's
// own lists the flags alone, which left a missing RUN_ID unsaid.
func command(name string, args []string, operands string, own func(*flag.FlagSet)) (*grpc.ClientConn, []string) {
	flags := flag.NewFlagSet(name, flag.ExitOnError)
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), "usage: runstream-go %s [flags] %s\n", name, operands)
		flags.PrintDefaults()
	}
	var opts ConnectOptions
	flags.StringVar(&opts.Target, "target", "127.0.0.1:50051", "the server, HOST:PORT")
	flags.StringVar(&opts.CAFile, "ca", "", "PEM CA of the server's certificate: connect with TLS")
	flags.StringVar(&opts.TokenFile, "token-file", "", "file holding the JWT to send (read again for every call)")
	if own != nil {
		own(flags)
	}
	_ = flags.Parse(args)
	if flags.NArg() != len(strings.Fields(operands)) {
		fmt.Fprintf(flags.Output(), "runstream-go %s: expected %s, got %d operand(s)\n", name, operands, flags.NArg())
		flags.Usage()
		os.Exit(2)
	}
	conn, err := Connect(opts)
	if err != nil {
		log.Fatalf("connect: %v", err)
	}
	return conn, flags.Args()
}

// retryCall makes an idempotent unary call until it succeeds, fails for good, or a minute of
// failures passed. `final` lists codes this call treats as answers on top of retryable's.
// Each retry is logged under `name`, as watch and the report stream log theirs: a producer
// started before its server (or at the wrong address) said nothing for the whole minute.
func retryCall(ctx context.Context, name string, call func(context.Context) error, final ...codes.Code) error {
	var failedSince time.Time
	for attempt := 0; ; attempt++ {
		err := call(ctx)
		if err == nil {
			return nil
		}
		for _, code := range final {
			if status.Code(err) == code {
				return err
			}
		}
		delay, ok := retryable(err, false)
		if failedSince.IsZero() {
			failedSince = time.Now()
		}
		if !ok || time.Since(failedSince) > giveUp || ctx.Err() != nil {
			return err
		}
		wait := backoffDelay(attempt, delay)
		log.Printf("%s: %s %q; trying again in %s", name, status.Code(err), status.Convert(err).Message(), wait.Round(time.Millisecond))
		time.Sleep(wait)
	}
}

func produce(args []string) error {
	var steps, progress int
	var interval time.Duration
	var ask, prefix string
	conn, positional := command("produce", args, "RUN_ID", func(flags *flag.FlagSet) {
		flags.IntVar(&steps, "steps", 3, "steps in the run's plan")
		flags.IntVar(&progress, "progress", 4, "progress events per step")
		flags.DurationVar(&interval, "interval", 50*time.Millisecond, "pause between progress events")
		flags.StringVar(&ask, "ask", "", "after the steps, ask this decision (yes/no) and wait for its answer")
		flags.StringVar(&prefix, "key-prefix", "go", "idempotency keys are PREFIX:1, PREFIX:2, ...")
	})
	defer conn.Close()
	if steps < 0 || progress < 0 {
		// -steps -1 planned no step and completed the run saying "-1 steps".
		fmt.Fprintf(os.Stderr, "runstream-go produce: -steps and -progress are 0 or more, got %d and %d\n", steps, progress)
		os.Exit(2)
	}
	ctx := context.Background()
	runID := positional[0]
	runs := rs.NewRunServiceClient(conn)

	// The run id is the client's: a CreateRun retried after its first try was applied gets
	// ALREADY_EXISTS, and the run is (possibly) ours. A server-chosen id (run_id empty) is
	// unsafe to retry unless the refusal came with x-runstream-unprocessed in its trailers.
	create := &rs.CreateRunRequest{RunId: runID, Workflow: "go-example", DisplayName: "Go producer"}
	for i := 1; i <= steps; i++ {
		create.Steps = append(create.Steps, &rs.StepSpec{StepId: fmt.Sprintf("step-%d", i), Name: fmt.Sprintf("Step %d", i)})
	}
	err := retryCall(ctx, "CreateRun", func(ctx context.Context) error {
		_, err := runs.CreateRun(ctx, create)
		return err
	}, codes.AlreadyExists)
	if status.Code(err) == codes.AlreadyExists {
		log.Printf("run %s exists: reporting on it", runID)
	} else if err != nil {
		return err
	}

	reporter := NewReporter(rs.NewReportServiceClient(conn), runID, prefix)
	send := func(events ...*rs.RunEvent) error {
		select {
		case control := <-reporter.Controls:
			if control.Action == rs.ControlAction_CONTROL_ACTION_CANCEL {
				return status.Errorf(codes.Canceled, "run cancelled: %s", control.Reason)
			}
		default:
		}
		return reporter.Send(events...)
	}
	if err := send(&rs.RunEvent{Payload: &rs.RunEvent_RunStarted{RunStarted: &rs.RunStarted{Message: "from Go"}}}); err != nil {
		return err
	}
	for i := 1; i <= steps; i++ {
		step := fmt.Sprintf("step-%d", i)
		if err := send(&rs.RunEvent{Payload: &rs.RunEvent_StepStarted{StepStarted: &rs.StepStarted{StepId: step}}}); err != nil {
			return err
		}
		for p := 1; p <= progress; p++ {
			event := &rs.StepProgress{StepId: step, Percent: float64(100 * p / (progress + 1)), Detail: fmt.Sprintf("part %d", p)}
			if err := send(&rs.RunEvent{Payload: &rs.RunEvent_StepProgress{StepProgress: event}}); err != nil {
				return err
			}
			time.Sleep(interval)
		}
		if err := send(&rs.RunEvent{Payload: &rs.RunEvent_StepCompleted{StepCompleted: &rs.StepCompleted{StepId: step}}}); err != nil {
			return err
		}
	}
	summary := fmt.Sprintf("%d steps", steps)
	if ask != "" {
		choice, err := askDecision(ctx, conn, reporter, runID, ask)
		if err != nil {
			return err
		}
		summary += fmt.Sprintf(", %s: %s", ask, choice)
	}
	if err := send(&rs.RunEvent{Payload: &rs.RunEvent_RunCompleted{RunCompleted: &rs.RunCompleted{Summary: summary}}}); err != nil {
		return err
	}
	closeCtx, cancel := context.WithTimeout(ctx, 2*giveUp)
	defer cancel()
	if err := reporter.Close(closeCtx); err != nil {
		return err
	}
	fmt.Printf("completed %s: %s\n", runID, summary)
	return nil
}

// askDecision asks a yes/no question and waits for the answer: pushed on the Report stream
// while it is up; one given while the producer was reconnecting is not pushed again, so it
// also asks GetDecision every two seconds.
func askDecision(ctx context.Context, conn *grpc.ClientConn, reporter *Reporter, runID, decisionID string) (string, error) {
	question := &rs.DecisionRequested{
		DecisionId: decisionID, DecisionType: "approval", Prompt: "Go on?",
		Options: []*rs.DecisionOption{{Value: "yes", Label: "Yes"}, {Value: "no", Label: "No"}},
	}
	if err := reporter.Send(&rs.RunEvent{Payload: &rs.RunEvent_DecisionRequested{DecisionRequested: question}}); err != nil {
		return "", err
	}
	if err := reporter.Flush(ctx); err != nil {
		return "", err
	}
	fmt.Printf("asked %s\n", decisionID)
	decisions := rs.NewDecisionServiceClient(conn)
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()
	for {
		select {
		case decision := <-reporter.Decisions:
			if decision.DecisionId == decisionID {
				fmt.Printf("decision %s: %s (%s)\n", decisionID, decision.Choice, decision.Outcome)
				return decision.Choice, nil
			}
		case <-poll.C:
			got, err := decisions.GetDecision(ctx, &rs.GetDecisionRequest{RunId: runID, DecisionId: decisionID})
			if err == nil && got.Decision.State == rs.DecisionState_DECISION_STATE_RESOLVED {
				fmt.Printf("decision %s: %s (%s, read with GetDecision)\n", decisionID, got.Decision.Choice, got.Decision.Outcome)
				return got.Decision.Choice, nil
			}
		}
	}
}

func watch(args []string) error {
	var after int64
	conn, positional := command("watch", args, "RUN_ID", func(flags *flag.FlagSet) {
		flags.Int64Var(&after, "after", 0, "start after this seq (0: from the run's first event)")
	})
	defer conn.Close()
	last, err := Watch(context.Background(), rs.NewRunServiceClient(conn), positional[0], after, func(event *rs.RunEvent) {
		// A kind newer than these stubs has nothing here to show; Watch keeps its seq.
		if kind := kindOf(event); kind != rs.EventKind_EVENT_KIND_UNSPECIFIED {
			fmt.Printf("%d %s\n", event.Seq, kind)
		}
	})
	if err == nil {
		fmt.Printf("ended after seq %d\n", last)
	}
	return err
}

func answer(args []string) error {
	conn, positional := command("answer", args, "RUN_ID DECISION CHOICE", nil)
	defer conn.Close()
	decisions := rs.NewDecisionServiceClient(conn)
	request := &rs.SubmitDecisionRequest{RunId: positional[0], DecisionId: positional[1], Choice: positional[2]}
	var response *rs.SubmitDecisionResponse
	// The same answer again returns the same result, so SubmitDecision is safe to retry;
	// ABORTED is an answer here: the decision was closed with another outcome.
	err := retryCall(context.Background(), "SubmitDecision", func(ctx context.Context) error {
		var err error
		response, err = decisions.SubmitDecision(ctx, request)
		return err
	}, codes.Aborted)
	if err != nil {
		return err
	}
	fmt.Printf("answered %s: %s (%s)\n", response.Decision.DecisionId, response.Decision.Choice, response.Decision.Outcome)
	return nil
}
