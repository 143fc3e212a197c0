package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	rs "runstream.dev/gen/go/runstream/v1"
)

// Reporter reports one run's events over a Report stream, with the producer's half of the
// exact-resume guarantee: every event gets an idempotency key, every batch stays pending
// until the server acknowledges it (it is then durable), and when the stream fails in a way
// a retry can cure, the reporter opens a new one and sends every pending batch again under
// the same keys. The server stores each key once, so nothing is lost or doubled. A failure
// no retry can cure (an invalid event, a run that ended) ends the reporter with that status.
//
// Keys are "<prefix>:<n>", n counting the run's events from 1. They are per run, at most
// 128 characters, printable (no control characters) and must not start with "runstream."
// (the server's own). A producer that restarts and reports the same events in the same
// order under the same prefix gets each one stored once; batch_id only matches acks to
// batches and plays no part in deduplication.
type Reporter struct {
	client rs.ReportServiceClient
	runID  string
	prefix string

	// Decisions gets the answers to this run's decisions the server pushes (while the
	// stream is up: a producer that was away asks GetDecision). Controls gets PAUSE,
	// RESUME and CANCEL. Both are dropped when nobody reads and the buffer is full.
	Decisions chan *rs.Decision
	Controls  chan *rs.Control

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced whenever pending or err changes
	stream   rs.ReportService_ReportClient
	cancel   context.CancelFunc
	pending  []*rs.ReportRequest // sent or not, unacknowledged, in order
	events   int                 // events given keys so far
	batchID  int64
	err      error // final: the reporter stopped
	closing  bool
	finished chan struct{}
}

// NewReporter attaches to a created run and starts receiving; call Close when done.
func NewReporter(client rs.ReportServiceClient, runID, prefix string) *Reporter {
	r := &Reporter{
		client: client, runID: runID, prefix: prefix,
		Decisions: make(chan *rs.Decision, 16), Controls: make(chan *rs.Control, 16),
		changed: make(chan struct{}), finished: make(chan struct{}),
	}
	go r.receive()
	return r
}

// Send gives each event its key, queues the batch and sends it without waiting for the
// acknowledgement (Flush waits). A batch holds at most 1,000 events and 4 MiB encoded,
// each event at most 256 KiB: the server refuses larger ones, and no resend would help.
func (r *Reporter) Send(events ...*rs.RunEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	for _, event := range events {
		r.events++
		event.IdempotencyKey = fmt.Sprintf("%s:%d", r.prefix, r.events)
	}
	r.batchID++
	batch := &rs.ReportRequest{RunId: r.runID, Events: events, BatchId: r.batchID}
	r.pending = append(r.pending, batch)
	if r.stream != nil {
		// A failed Send says only io.EOF: the stream's status comes from Recv, which
		// reconnects and resends this batch with the others still pending.
		_ = r.stream.Send(batch)
	}
	r.notify()
	return nil
}

// Flush waits until every batch sent so far is acknowledged (durable), or the reporter fails.
func (r *Reporter) Flush(ctx context.Context) error {
	for {
		r.mu.Lock()
		done, err, changed := len(r.pending) == 0, r.err, r.changed
		r.mu.Unlock()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close flushes, then closes the stream; the server ends it OK.
func (r *Reporter) Close(ctx context.Context) error {
	if err := r.Flush(ctx); err != nil {
		r.stop(err)
		return err
	}
	r.mu.Lock()
	r.closing = true
	if r.stream != nil {
		_ = r.stream.CloseSend()
	}
	r.mu.Unlock()
	select {
	case <-r.finished:
	case <-ctx.Done():
		r.stop(ctx.Err())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == io.EOF {
		return nil
	}
	return r.err
}

func (r *Reporter) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Reporter) stop(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
	if r.cancel != nil {
		r.cancel()
	}
	r.notify()
}

// connect opens a stream and sends every pending batch on it, in order.
func (r *Reporter) connect() (rs.ReportService_ReportClient, error) {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := r.client.Report(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		cancel()
		return nil, r.err
	}
	// The first message attaches the stream to the run: send it even with no batch pending.
	first := &rs.ReportRequest{RunId: r.runID}
	if len(r.pending) == 0 {
		_ = stream.Send(first)
	}
	for _, batch := range r.pending {
		_ = stream.Send(batch)
	}
	if r.closing {
		_ = stream.CloseSend()
	}
	r.stream, r.cancel = stream, cancel
	return stream, nil
}

// receive owns the stream's lifetime: it reads acknowledgements, decisions and controls,
// and reconnects when the stream fails with a status a retry can cure.
func (r *Reporter) receive() {
	defer close(r.finished)
	var failedSince time.Time
	for attempt := 0; ; attempt++ {
		stream, err := r.connect()
		accepted := false
		for err == nil {
			var response *rs.ReportResponse
			response, err = stream.Recv()
			if err != nil {
				break
			}
			accepted, attempt, failedSince = true, 0, time.Time{}
			r.handle(response)
		}
		r.mu.Lock()
		r.stream = nil
		closing, final := r.closing, r.err != nil
		r.mu.Unlock()
		if final {
			return
		}
		if err == io.EOF {
			if !closing {
				err = status.Error(codes.Unknown, "the server ended the Report stream before the producer closed it")
			}
			r.stop(err)
			return
		}
		delay, ok := retryable(err, accepted)
		if failedSince.IsZero() {
			failedSince = time.Now()
		}
		if !ok || time.Since(failedSince) > giveUp {
			r.stop(err)
			return
		}
		wait := backoffDelay(attempt, delay)
		log.Printf("report stream: %s %q; resending what is not acknowledged in %s", status.Code(err), status.Convert(err).Message(), wait.Round(time.Millisecond))
		time.Sleep(wait)
	}
}

// handle takes one ReportResponse: "exactly one field is set", plain fields rather than a
// oneof, so each is tested in turn, and a message with none this client knows (a field added
// later) is skipped.
func (r *Reporter) handle(response *rs.ReportResponse) {
	switch {
	case response.Ack != nil:
		r.mu.Lock()
		// Acknowledgements come in the order the batches were sent.
		if len(r.pending) > 0 && r.pending[0].BatchId == response.Ack.BatchId {
			r.pending = r.pending[1:]
		}
		r.notify()
		r.mu.Unlock()
	case response.Decision != nil:
		select {
		case r.Decisions <- response.Decision:
		default:
		}
	case response.Control != nil:
		select {
		case r.Controls <- response.Control:
		default:
		}
	}
}
