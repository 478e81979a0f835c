package provision_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// failedDeletes fails every DELETE as never sent while armed.
type failedDeletes struct {
	provision.Resolver
	armed atomic.Bool
}

func (f *failedDeletes) Delete(ctx context.Context, token string) (provision.PushResult, error) {
	if f.armed.Load() {
		return provision.PushResult{}, provision.ErrNotSent
	}
	return f.Resolver.Delete(ctx, token)
}

// bigTags returns n tags of 100 characters each.
func bigTags(n int) []string {
	var tags []string
	for i := range n {
		tags = append(tags, fmt.Sprintf("t%03d%s", i, strings.Repeat("x", 96)))
	}
	return tags
}

// TestDeleteFinishesAfterMaxPayloadWentDown: a delete waits for the
// servers (its DELETE failed) with a disabled version signed when
// max_payload was larger. The servers' max_payload goes down below it
// (SetMaxJWTSize lowers the service's limit at reconnect): the reconciler
// pushed that version again as it was, every push failed "maximum payload
// exceeded", and the delete never finished. Nothing else slims it: nobody
// can edit a deleted account smaller.
func TestDeleteFinishesAfterMaxPayloadWentDown(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	f := &failedDeletes{}
	d := newDomain(t, env, func(r provision.Resolver) provision.Resolver { f.Resolver = r; return f })
	defer d.stop()
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "big", Tags: bigTags(80)})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	f.armed.Store(true)
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "big"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != string(provision.PhaseDisabled) {
		t.Fatalf("delete phase %q, want %q (its DELETE failed)", rep.Phase, provision.PhaseDisabled)
	}
	tomb, err := d.store.Account(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	const maxPayload = 8192
	if len(tomb.JWT) <= maxPayload {
		t.Fatalf("the disabled version is %d bytes, want it over %d", len(tomb.JWT), maxPayload)
	}
	env.SetMaxPayload(t, maxPayload)
	waitUp(t, d)
	d.svc.SetMaxJWTSize(maxPayload - 4096 - 512) // as the service does at reconnect
	f.armed.Store(false)
	var phase provision.Phase
	var passErr error
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			passErr = err
		}
		a, err := d.store.Account(ctx, pub)
		if err != nil {
			t.Fatal(err)
		}
		if phase = a.Phase; phase == provision.PhaseDeleted {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if phase != provision.PhaseDeleted {
		t.Fatalf("the delete never finished after max_payload went down to %d (disabled version %d bytes): phase %q, last pass error %v", maxPayload, len(tomb.JWT), phase, passErr)
	}
	for i, c := range d.lookupAll(t, pub) {
		if c != "" {
			t.Errorf("server %d still holds the deleted account (%d bytes)", i, len(c))
		}
	}
}
