package events

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestRefusedTellsTheEventFromTheStream: only an answer about the event
// itself counts toward giving it up. An overloaded stream (429) and an
// earlier attempt of the same event still being stored on R3 (409,
// "duplicate message id is in process") say nothing of the event: counted
// as refusals, five of them gave up events a later attempt stored.
func TestRefusedTellsTheEventFromTheStream(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"another stream expected", &jetstream.APIError{Code: 400, ErrorCode: 10060, Description: "expected stream does not match"}, true},
		{"over max_msg_size", &jetstream.APIError{Code: 400, ErrorCode: 10054, Description: "message size exceeds maximum allowed"}, true},
		{"ingest queue full", &jetstream.APIError{Code: 429, Description: "too many requests"}, false},
		{"the account's storage full", &jetstream.APIError{Code: 400, ErrorCode: 10002, Description: "resource limits exceeded for account"}, false},
		{"duplicate in process", &jetstream.APIError{Code: 409, ErrorCode: 10158, Description: "duplicate message id is in process"}, false},
		{"no leader", fmt.Errorf("publish: %w", jetstream.ErrNoStreamResponse), false},
		{"timeout", context.DeadlineExceeded, false},
		{"disconnected", nats.ErrDisconnected, false},
		{"too large for the connection", nats.ErrMaxPayload, true},
		{"unknown", errors.New("something else"), true},
	}
	for _, tt := range tests {
		if got := refused(tt.err); got != tt.want {
			t.Errorf("%s: refused(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
