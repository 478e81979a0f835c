package kvstore

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestOpenRefusesASealedBucket: an operator hardens the bucket's stream
// (compression, per-message TTLs, max bytes with discard new), which the
// store keeps and opens; then seals it, which no edit undoes. The sealed
// bucket opened (the write probe's refusal was taken for a writable
// stream), the instance said it was healthy, and every change failed 500
// "invalid operation on sealed stream". Open refuses it, naming it.
func TestOpenRefusesASealedBucket(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	nc := d.connect(t, d.svcCreds)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := bg(t)
	cfg := makeBucket(t, js, func(c *jetstream.StreamConfig) {
		c.Compression, c.AllowMsgTTL, c.MaxBytes = jetstream.S2Compression, true, 1<<20
	})
	s := openStore(t, nc, Options{Seal: key, Instance: "one"})
	if _, err := s.CreateAccount(ctx, newAccount(t, "acme")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	stream, err := js.Stream(ctx, "KV_provisioner")
	if err != nil {
		t.Fatal(err)
	}
	if c := stream.CachedInfo().Config; c.Compression != jetstream.S2Compression || !c.AllowMsgTTL || c.MaxBytes != 1<<20 {
		t.Fatalf("after an open: compression %v, message TTLs %v, max bytes %d; the operator set them", c.Compression, c.AllowMsgTTL, c.MaxBytes)
	}

	cfg.Sealed = true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, nc, Options{Seal: key, Instance: "two"})
	if err == nil {
		_, werr := s.CreateAccount(ctx, newAccount(t, "other"))
		s.Close()
		t.Fatalf("Open of a sealed bucket succeeded; a change then: %v", werr)
	}
	if !errors.Is(err, ErrBucketMismatch) || !strings.Contains(err.Error(), "sealed") {
		t.Fatalf("Open of a sealed bucket: %v; want ErrBucketMismatch naming the seal", err)
	}
}
