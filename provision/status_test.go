package provision_test

import (
	"context"
	"errors"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// brokenStore is a store that reports itself broken, as a file store
// whose journal could not be written, or a KV store whose bucket was
// deleted under it, does.
type brokenStore struct {
	provision.Store
	err error
}

func (b *brokenStore) Broken() error { return b.err }

// TestStatusNamesABrokenStore: an instance whose store refuses every
// change until a restart says so in prov.status, the endpoint a health
// check asks; it said nothing, and looked healthy.
func TestStatusNamesABrokenStore(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	st, err := d.svc.Status(ctx, api.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Problem != "" {
		t.Errorf("status of a store that serves names a problem: %q", st.Problem)
	}
	broken := &brokenStore{Store: d.store, err: errors.New("filestore: a journal write failed; reopen the store")}
	p, err := provision.New(provision.Config{Operator: d.op, Store: broken, Resolver: d.rc, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if st, err = p.Status(ctx, api.StatusRequest{}); err != nil {
		t.Fatal(err)
	}
	if st.Problem != broken.err.Error() {
		t.Errorf("status of a broken store: problem %q, want %q", st.Problem, broken.err)
	}
}
