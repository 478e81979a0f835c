package responder_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
)

// fullStore refuses account creates with the error it is given, as the
// file store does on a full disk or past the file size limit.
type fullStore struct {
	provision.Store
	err atomic.Pointer[error]
}

func (f *fullStore) CreateAccount(ctx context.Context, a provision.Account) (uint64, error) {
	if err := f.err.Load(); err != nil {
		return 0, *err
	}
	return f.Store.CreateAccount(ctx, a)
}

// TestStoreFullSaysItsCause: a 507 says what has no room and what to do.
// A file of the file store past the process's file size limit was
// answered "the provisioner's store is full; an operator must make room",
// which sent operators freeing a disk that had room. The reply quotes
// nothing of the store's error (its paths, a seed).
func TestStoreFullSaysItsCause(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	store := &fullStore{Store: svc.Store}
	p := domain(t, svc, provision.Config{Store: store})
	extra(t, env, p, responder.Config{Prefix: "prov.full", Name: "full"})
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	// As the file store words them (noRoom), with a seed where a path
	// would be.
	disk := fmt.Errorf("filestore: write journal: %w: the disk of store_dir has no room: write /srv/%s/journal.v2: no space left on device", provision.ErrFull, seed)
	limit := fmt.Errorf("filestore: write journal: %w: %w: a file of store_dir reached the process's file size limit of 40960 bytes (ulimit -f, systemd's LimitFSIZE); raise it or lift it: write /srv/%s/journal.v2: file too large", provision.ErrFull, provision.ErrFileSizeLimit, seed)
	broken := func(cause error) error {
		return fmt.Errorf("filestore: a journal write failed (%w) and no new snapshot could be written (write snapshot: file too large); reopen the store: %w: %w", cause, provision.ErrBroken, provision.ErrUnavailable)
	}
	tests := []struct {
		name    string
		give    error
		want    []string
		wantNot []string
	}{
		{"disk", disk, []string{"store is full", "make room"}, []string{"file size limit", "restart"}},
		{"disk broken", broken(disk), []string{"store is full", "make room", "restart"}, []string{"file size limit"}},
		{"file size limit", limit, []string{"file size limit", "ulimit -f", "LimitFSIZE", "raise"}, []string{"make room", "restart"}},
		{"file size limit broken", broken(limit), []string{"file size limit", "ulimit -f", "raise", "restart"}, []string{"make room"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store.err.Store(&tt.give)
			r := provtest.Request(t, admin, "prov.full.account.create", fmt.Sprintf(`{"name":"acme-%d"}`, i))
			if r.Code != api.CodeStoreFull {
				t.Fatalf("account.create: %d %q, want 507", r.Code, r.Description)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.Description, w) {
					t.Errorf("507 %q: want it to say %q", r.Description, w)
				}
			}
			for _, w := range append(tt.wantNot, string(seed), "/srv/", "journal.v2") {
				if strings.Contains(r.Description, w) {
					t.Errorf("507 %q: want it not to say %q", r.Description, w)
				}
			}
		})
	}
}
