package kvstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// lateBeforeDeleteKV stores, once armed, a write of the lease key just
// before the next Delete of it: a renewal of this store's own whose
// answer was not waited for (cut by a stop) that the stream stores between
// the release's read and its delete, or an earlier renewal a lagging
// replica did not show the release's read yet.
type lateBeforeDeleteKV struct {
	jetstream.KeyValue
	late func(ctx context.Context)
}

func (k *lateBeforeDeleteKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	if f := k.late; f != nil {
		k.late = nil
		f(ctx)
	}
	return k.KeyValue.Delete(ctx, key, opts...)
}

// TestLeaseReleasedOverALateOwnRenewal: a release whose delete is refused
// because the entry moved since its read (a renewal of this store's own
// stored in between) left the lease where it was, held by this store's
// token: another instance (the same instance name restarted at once) waited
// a whole ttl for a lease released. The release must delete the entry
// that holds this store's token.
func TestLeaseReleasedOverALateOwnRenewal(t *testing.T) {
	_, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	if ok, err := sa.TryLease(ctx, "l", time.Minute); !ok || err != nil {
		t.Fatalf("a: %v, %v", ok, err)
	}
	kv := &lateBeforeDeleteKV{KeyValue: sa.kv}
	kv.late = func(ctx context.Context) {
		data, _ := json.Marshal(leaseValue{Instance: sa.opts.Instance, Token: sa.token, Expires: time.Now().Add(time.Minute).UTC(), TTL: time.Minute})
		if _, err := kv.KeyValue.Put(ctx, leasePrefix+"l", data); err != nil {
			t.Error(err)
		}
	}
	sa.kv = kv
	if err := sa.ReleaseLease(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if kv.late != nil {
		t.Fatal("the release deleted nothing: the late write was not made")
	}
	if ok, err := sb.TryLease(ctx, "l", time.Minute); !ok || err != nil {
		t.Fatalf("b after a released: %v, %v; want the lease a released", ok, err)
	}
}
