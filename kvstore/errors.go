package kvstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// Transient reports whether err means JetStream could not be reached or
// did not answer in time: the request may be tried again, and a write may
// or may not have been stored. Other users of the service account's
// JetStream (the audit stream) classify their failures with it too.
func Transient(err error) bool {
	return transient(err)
}

func transient(err error) bool {
	for _, t := range []error{
		context.DeadlineExceeded, context.Canceled,
		nats.ErrTimeout, nats.ErrNoResponders, nats.ErrConnectionClosed, nats.ErrDisconnected,
		nats.ErrConnectionReconnecting, nats.ErrConnectionDraining,
		// Refused by nats.go while reconnecting, its buffer off or full:
		// never sent, so unavailable like a write that timed out.
		nats.ErrReconnectBufExceeded,
		jetstream.ErrNoStreamResponse, jetstream.ErrAsyncPublishTimeout, jetstream.ErrTooManyStalledMsgs,
		jetstream.ErrJetStreamNotEnabled, jetstream.ErrConnectionClosed, jetstream.ErrJetStreamPublisherClosed,
	} {
		if errors.Is(err, t) {
			return true
		}
	}
	// JetStream answers 503 while a stream or the meta layer has no
	// leader, 429 when the stream's ingest queue is full and it dropped
	// the write (overloaded: the write says nothing of the record, and
	// taken for a refusal, a user record in the background was given up
	// after five attempts, a second and a half), and 10164 while another
	// write of the key is replicated.
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.Code == http.StatusServiceUnavailable || apiErr.Code == http.StatusTooManyRequests) || busy(err)
}

// busy reports a conditional write the stream refused because another
// write of the same key is still being replicated (10164, on a replicated
// stream): the answer says nothing of what the key holds.
func busy(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// errCodeBatchesDisabled is nats-server's JSAtomicPublishDisabledErr: the
// stream allows no atomic batches.
const errCodeBatchesDisabled = 10174

// batchesDisabled reports a batch the stream refused as it allows none
// (allow_atomic off).
func batchesDisabled(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeBatchesDisabled
}

// untilSettled makes a conditional write again while the stream answers
// that another write of its key is under way, until ctx ends; then it
// fails with provision.ErrUnavailable.
func untilSettled(ctx context.Context, what string, write func() error) error {
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		err := write()
		if !busy(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kvstore: %s: %w: another write of the key is still under way: %w", what, provision.ErrUnavailable, err)
		case <-time.After(wait):
		}
	}
}

// createSettled is kv.Create, made again while the stream answers that
// another write of the key is under way: over a delete marker kv.Create
// writes a second time, and passes that write's 10164 on as it is.
func createSettled(ctx context.Context, kv jetstream.KeyValue, key string, value []byte) (uint64, error) {
	var rev uint64
	err := untilSettled(ctx, "create "+key, func() (err error) {
		rev, err = kv.Create(ctx, key, value)
		return err
	})
	return rev, err
}

// JetStream's answers to a write that finds no room: the account's storage
// limit reached (10002), or the servers out of storage (10023, 10047).
var fullCodes = []jetstream.ErrorCode{10002, 10023, 10047}

// full reports whether err is JetStream finding no room for a write.
func full(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && slices.Contains(fullCodes, apiErr.ErrorCode)
}

// noLimits reports whether err is JetStream finding no limit for the
// stream's tier (10120, "no JetStream default or applicable tiered limit
// present"): the account's limits changed between flat and tiered while
// the stream existed, which only a restart of the server mends.
func noLimits(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == 10120
}

// watchTierless reports a watcher refused for want of its tier's limits
// (10120): nats.go's watch reports the consumer's creation with its own
// API error type, which noLimits does not read.
func watchTierless(err error) bool {
	var apiErr *nats.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == 10120
}

// mapErr translates a JetStream failure of op into the domain's kinds:
// provision.ErrFull when there is no room, provision.ErrUnavailable for
// the transient ones, wrapped with what was being done.
func mapErr(op string, err error) error {
	if full(err) {
		return fmt.Errorf("kvstore: %s: %w: the service account's JetStream storage has no room; raise disk_storage in its JWT or make room on the servers: %w", op, provision.ErrFull, err)
	}
	if noLimits(err) {
		return fmt.Errorf("kvstore: %s: %w: the service account's JWT has no JetStream limit for the tier its bucket is in; a server keeps a stream in the tier it was created or started under, so after the account's limits change between flat and tiered, restart each server (one at a time): %w", op, provision.ErrUnavailable, err)
	}
	if transient(err) {
		return fmt.Errorf("kvstore: %s: %w: %w", op, provision.ErrUnavailable, err)
	}
	return fmt.Errorf("kvstore: %s: %w", op, err)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("kvstore: %w: %s", provision.ErrInvalid, fmt.Sprintf(format, args...))
}
