// Package jsmake makes a JetStream stream right after another was
// deleted.
package jsmake

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// After a delete, nats-server (2.15) removes the account's streams
// directory in the background once it is empty (the deleted stream was
// the account's only stream on it), and a stream made meanwhile may find
// it gone under the directory it makes: "error creating store for stream"
// (JSStreamCreateErrF, 10049), about one make in a hundred. A moment
// later it is made. Retry tries that answer alone again, Tries times in
// all, Pause apart.
const (
	errCodeStreamCreate = 10049
	Tries               = 5
	Pause               = 50 * time.Millisecond
)

// Retry runs create, a stream's create (or create-or-update), and again
// while it fails with "error creating store for stream", up to Tries
// times in all or until ctx ends; it returns its last error.
func Retry(ctx context.Context, create func() error) error {
	for try := 1; ; try++ {
		err := create()
		var api *jetstream.APIError
		if err == nil || try == Tries || !errors.As(err, &api) || api.ErrorCode != errCodeStreamCreate {
			return err
		}
		select {
		case <-time.After(Pause):
		case <-ctx.Done():
			return err
		}
	}
}
