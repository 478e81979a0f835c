package events_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/provtest"
)

// TestStartKeepsTheAuditStreamsGuards: an operator guards the audit
// stream, as an audit log is guarded, against deletes and purges of its
// records (deny_delete, deny_purge), compresses it, and turns on
// per-message TTLs. The server refuses every update that takes a guard
// away or turns TTLs off, so WithAudit, which wrote its own config over
// the stream's, failed at every start ("can not cancel deny message
// deletes"), and the service never started; the compression it took away
// without a word.
func TestStartKeepsTheAuditStreamsGuards(t *testing.T) {
	cfg := auditAfterRestart(t, func(c *jetstream.StreamConfig) {
		c.DenyDelete, c.DenyPurge, c.Compression, c.AllowMsgTTL = true, true, jetstream.S2Compression, true
	})
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.Compression != jetstream.S2Compression || !cfg.AllowMsgTTL {
		t.Fatalf("after a start: deny delete %v, deny purge %v, compression %v, message TTLs %v; the operator set them", cfg.DenyDelete, cfg.DenyPurge, cfg.Compression, cfg.AllowMsgTTL)
	}
}

// TestStartKeepsTheAuditStreamsRepublish: an operator feeds a log
// collector from the audit stream with a republish of its records. Every
// start wrote the service's own config over the stream's, and took it
// away without a word: the collector got nothing more.
func TestStartKeepsTheAuditStreamsRepublish(t *testing.T) {
	republish := &jetstream.RePublish{Source: "prov.audit.>", Destination: "collector.>", HeadersOnly: true}
	cfg := auditAfterRestart(t, func(c *jetstream.StreamConfig) { c.RePublish = republish })
	if got := cfg.RePublish; got == nil || *got != *republish {
		t.Fatalf("after a start: republish %+v, want the operator's %+v", got, republish)
	}
}

// auditAfterRestart writes three events, lets an operator change the
// audit stream (change), starts the publisher again (WithAudit, as the
// service's start does), writes three more, checks all six are stored
// once in order, and returns the stream's config as the start left it.
func auditAfterRestart(t *testing.T, change func(*jetstream.StreamConfig)) jetstream.StreamConfig {
	t.Helper()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	svc := env.ServiceUser(t)
	ctx := context.Background()
	pub := auditPublisher(t, env, sys)
	publishUsers(pub, 0, 3)
	if err := pub.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	changeAudit(t, svc, change)

	// The service starts again.
	again := events.New(sys, "prov", slog.New(slog.DiscardHandler))
	if err := again.WithAudit(ctx, auditConn(t, env), 1); err != nil {
		t.Fatalf("WithAudit on the stream the operator changed: %v", err)
	}
	publishUsers(again, 3, 6)
	if err := again.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	storedOnceInOrder(t, svc, 6)
	return stream.CachedInfo().Config
}
