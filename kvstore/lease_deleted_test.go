package kvstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestLeaseRenewedOverItsDeletedEntry: a renewal whose write is refused
// because the entry was deleted since its read (an operator's `nats kv
// del` of a lease that looked stuck, a release) read the entry again,
// found none, and said the lease held by another instance: the instance
// name's renewal then logged an ERROR and reported, until its next
// renewal, that another process took its name over, though none holds
// it. A lease with no entry is free: the renewal takes it.
func TestLeaseRenewedOverItsDeletedEntry(t *testing.T) {
	_, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	if ok, err := sa.TryLease(ctx, "l", time.Minute); !ok || err != nil {
		t.Fatalf("a: %v, %v", ok, err)
	}
	kv := &lateWriteKV{KeyValue: sa.kv}
	kv.late = func(ctx context.Context) {
		if err := kv.KeyValue.Delete(ctx, leasePrefix+"l"); err != nil {
			t.Error(err)
		}
	}
	sa.kv = kv
	held, err := sa.TryLease(ctx, "l", time.Minute)
	if kv.late != nil {
		t.Fatal("the renewal wrote nothing: the delete was not made")
	}
	if !held || err != nil {
		t.Fatalf("renewal over its deleted entry: %v, %v; want held (no other instance holds it)", held, err)
	}
	e, err := sa.kv.Get(ctx, leasePrefix+"l")
	if err != nil {
		t.Fatalf("the lease has no entry after a renewal said it held it: %v", err)
	}
	var v leaseValue
	if json.Unmarshal(e.Value(), &v) != nil || v.Token != sa.token {
		t.Fatalf("the lease holds %s, not a's token", e.Value())
	}
	if ok, err := sb.TryLease(ctx, "l", time.Minute); ok || err != nil {
		t.Fatalf("b: %v, %v; want refused while a holds it", ok, err)
	}
}
