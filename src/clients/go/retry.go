package main

import (
	"math/rand"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Which failures are worth another try, and when. These are the README's rules ("Other
// languages", Retrying) for the streams and the idempotent calls; nothing else is retried.
//
// A status carrying google.rpc.RetryInfo (RESOURCE_EXHAUSTED: too many watchers or
// streams) is retried after its delay. Otherwise the code decides:
//   - UNAVAILABLE (server unreachable, restarting, draining, store briefly unable to write),
//     CANCELLED that this client did not ask for (a server killed mid-stream), DEADLINE_EXCEEDED,
//     INTERNAL and UNKNOWN (how some transports report a cut stream), ABORTED (a proxy's
//     dropped upstream): the connection failed, not the request.
//   - UNAUTHENTICATED on a stream that had delivered a message: the token expired during
//     the stream; the next call reads a fresh one. Refused at once, it is final.
//   - Everything else (INVALID_ARGUMENT, FAILED_PRECONDITION, NOT_FOUND, PERMISSION_DENIED,
//     OUT_OF_RANGE, RESOURCE_EXHAUSTED without RetryInfo: an oversized event or batch, ...)
//     gets the same answer however often it is sent: resending it would loop for ever.

const (
	firstDelay = 250 * time.Millisecond // a draining server refuses until 250 ms pass with no call
	maxDelay   = 2 * time.Second
	giveUp     = 60 * time.Second // the Python SDK's reconnect_timeout
)

func retryable(err error, accepted bool) (time.Duration, bool) {
	st := status.Convert(err)
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.RetryInfo); ok {
			if delay := info.RetryDelay.AsDuration(); delay > firstDelay {
				return delay, true
			}
			return firstDelay, true
		}
	}
	switch st.Code() {
	case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded, codes.Internal, codes.Unknown, codes.Aborted:
		return 0, true
	case codes.Unauthenticated:
		return 0, accepted
	}
	return 0, false
}

// backoff is the wait before attempt n (0, 1, ...) after a failure: 250 ms doubling to 2 s,
// plus up to 20 % so that many clients cut at once do not come back at once.
func backoffDelay(attempt int, floor time.Duration) time.Duration {
	delay := maxDelay
	if attempt < 4 {
		delay = firstDelay << uint(attempt)
	}
	if floor > delay {
		delay = floor
	}
	return delay + time.Duration(rand.Int63n(int64(delay)/5+1))
}
