package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/provtest"
)

// TestStartKeepsTheAuditStreamsRoom: an operator who gave the audit stream
// more room (max bytes, max age) or more replicas keeps them when the
// service starts again. WithAudit put back its own bounds: the stream,
// which discards its oldest events at its bounds, dropped at once, and
// without a word, every record past 1 GiB or older than a year, and went
// back to the replicas of the bucket.
func TestStartKeepsTheAuditStreamsRoom(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	svc := env.ServiceUser(t)
	ctx := context.Background()
	pub := auditPublisher(t, env, sys)
	pub.Close(5 * time.Second)
	const bytes, age = events.AuditMaxBytes * 3 / 2, 5 * 365 * 24 * time.Hour
	changeAudit(t, svc, func(c *jetstream.StreamConfig) { c.MaxBytes, c.MaxAge = bytes, age })

	// The service starts again.
	again := auditPublisher(t, env, sys)
	defer again.Close(5 * time.Second)
	js, err := jetstream.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	if cfg.MaxBytes != bytes || cfg.MaxAge != age {
		t.Fatalf("after a start: max bytes %d, max age %v; the operator set %d, %v", cfg.MaxBytes, cfg.MaxAge, int64(bytes), age)
	}
	if !cfg.AllowAtomicPublish || cfg.Duplicates != 2*time.Minute {
		t.Fatalf("after a start: atomic %v, duplicates %v", cfg.AllowAtomicPublish, cfg.Duplicates)
	}
}

// TestStartKeepsAnUnboundedAuditStreamsRecords: an audit stream an
// operator (or an older version) left unbounded is bounded at start, as it
// could fill the storage the bucket shares, but not below what it holds.
// Bounded at the service's max bytes, the stream, which discards its
// oldest events, dropped at once, and without a word, every record past
// it.
func TestStartKeepsAnUnboundedAuditStreamsRecords(t *testing.T) {
	defer events.SetAuditMaxBytes(4 << 10)()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	svc := env.ServiceUser(t)
	ctx := context.Background()
	pub := auditPublisher(t, env, sys)
	changeAudit(t, svc, func(c *jetstream.StreamConfig) { c.MaxBytes = -1 })
	const n = 100 // well past 4 KiB
	publishUsers(pub, 0, n)
	if err := pub.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	// The service starts again.
	again := auditPublisher(t, env, sys)
	defer again.Close(5 * time.Second)
	js, err := jetstream.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info := stream.CachedInfo()
	if info.Config.MaxBytes <= 0 {
		t.Fatalf("after a start: max bytes %d; the stream stays unbounded", info.Config.MaxBytes)
	}
	if info.State.Msgs != n {
		t.Fatalf("after a start: the audit stream holds %d events (%d bytes, max bytes %d), had %d", info.State.Msgs, info.State.Bytes, info.Config.MaxBytes, n)
	}
	storedOnceInOrder(t, svc, n)
}
