package main

import (
	"context"
	"io"
	"log"
	"time"

	"google.golang.org/grpc/status"
	rs "runstream.dev/gen/go/runstream/v1"
)

// Watch follows a run from after afterSeq to its end, calling handle once for each event in
// seq order, and returns the last seq seen. When the stream fails in a way a retry can cure
// (a cut connection, a server restart, a draining server), it opens a new one asking for the
// events after the last seq it handled: every event exactly once, none skipped, whatever
// happens to the connection. It returns nil when the run has ended (the server ends the
// stream OK after the run's terminal event), or the status no retry can cure.
func Watch(ctx context.Context, runs rs.RunServiceClient, runID string, afterSeq int64, handle func(*rs.RunEvent)) (int64, error) {
	cursor := afterSeq
	var failedSince time.Time
	for attempt := 0; ; attempt++ {
		callCtx, cancel := context.WithCancel(ctx)
		stream, err := runs.WatchRun(callCtx, &rs.WatchRunRequest{RunId: runID, AfterSeq: cursor})
		// Whether the server had taken the call: a message came. (Not stream.Header(),
		// which grpc-go also returns without error for a refusal sent as trailers only.)
		accepted := false
		for err == nil {
			var response *rs.WatchRunResponse
			response, err = stream.Recv()
			if err != nil {
				break
			}
			accepted, attempt, failedSince = true, 0, time.Time{}
			// "Exactly one field is set": events (a repeated field, set = non-empty),
			// snapshot (only with include_snapshot) or heartbeat; a message with none this
			// client knows is skipped.
			for _, event := range response.Events {
				handle(event)
				cursor = event.Seq
			}
		}
		cancel()
		if err == io.EOF {
			return cursor, nil
		}
		if ctx.Err() != nil {
			return cursor, ctx.Err()
		}
		delay, ok := retryable(err, accepted)
		if failedSince.IsZero() {
			failedSince = time.Now()
		}
		if !ok || time.Since(failedSince) > giveUp {
			return cursor, err
		}
		wait := backoffDelay(attempt, delay)
		log.Printf("watch: %s %q; resuming after seq %d in %s", status.Code(err), status.Convert(err).Message(), cursor, wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return cursor, ctx.Err()
		}
	}
}

// kindOf names an event's kind: the EventKind value has the number of the payload field that
// is set (event.proto promises it), so the descriptors give it without a table. A kind newer
// than this client's stubs has no field here: UNSPECIFIED; skip the event, keep its seq.
func kindOf(event *rs.RunEvent) rs.EventKind {
	message := event.ProtoReflect()
	if field := message.WhichOneof(message.Descriptor().Oneofs().ByName("payload")); field != nil {
		return rs.EventKind(field.Number())
	}
	return rs.EventKind_EVENT_KIND_UNSPECIFIED
}
