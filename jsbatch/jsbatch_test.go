package jsbatch_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/jsbatch"
	"github.com/natsprov/provisioner/provtest"
)

// TestPublish: a batch is stored whole, in order, with one answer; a batch
// with one expectation that does not hold is stored not at all; the
// caller's messages are left as they were.
func TestPublish(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	nc := env.ServiceUser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The service user may use the audit stream; it stands in for any.
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "PROV_AUDIT", Subjects: []string{"prov.audit.>"}, AllowAtomicPublish: true})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*nats.Msg{
		{Subject: "prov.audit.a", Data: []byte("1"), Header: nats.Header{"Keep": []string{"yes"}}},
		{Subject: "prov.audit.b", Data: []byte("2")},
		{Subject: "prov.audit.a", Data: []byte("3")},
	}
	ack, err := jsbatch.Publish(ctx, nc, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Count != 3 || ack.Seq != 3 {
		t.Fatalf("ack %+v, want 3 messages ending at 3", ack)
	}
	// (The service user reads the audit stream with consumers.)
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for m := range batch.Messages() {
		got = append(got, m)
	}
	if len(got) != 3 {
		t.Fatalf("%d messages stored, want 3", len(got))
	}
	for i, want := range []string{"1", "2", "3"} {
		m := got[i]
		if string(m.Data()) != want || m.Headers().Get(jsbatch.IDHeader) != ack.Batch {
			t.Errorf("message %d: %q in batch %q, want %q in %q", i+1, m.Data(), m.Headers().Get(jsbatch.IDHeader), want, ack.Batch)
		}
	}
	if msgs[0].Header.Get("Keep") != "yes" || msgs[0].Header.Get(jsbatch.IDHeader) != "" || msgs[1].Header != nil {
		t.Errorf("the caller's messages were changed: %v, %v", msgs[0].Header, msgs[1].Header)
	}

	// The second message expects prov.audit.b never written: refused, and
	// nothing of the batch is stored.
	bad := []*nats.Msg{
		{Subject: "prov.audit.c", Data: []byte("4")},
		{Subject: "prov.audit.b", Data: []byte("5"), Header: nats.Header{jetstream.ExpectedLastSubjSeqHeader: []string{"0"}}},
	}
	var apiErr *jetstream.APIError
	if _, err := jsbatch.Publish(ctx, nc, bad); !errors.As(err, &apiErr) {
		t.Fatalf("a batch with an expectation that does not hold: %v, want the stream's refusal", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("%d messages after the refused batch, want 3", info.State.Msgs)
	}
	if _, err := jsbatch.Publish(ctx, nc, nil); err == nil {
		t.Fatal("an empty batch was sent")
	}
}
