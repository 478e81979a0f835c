package provision_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/provision"
)

// TestReconcilerRevokesMisfitsOfABusyAccount: a refused role change stands
// (its instance killed before the put-back), and the account is changed
// more often than the settle (a description each second: revokes,
// prunes' re-signs do the same), each change a version on top of it with
// the same templates. The pass took a version's age for how long its
// misfits had stood: none was ever old enough, and the user tagged
// "site:*" kept every site's subjects for good. The misfits' own age, on
// the pass's clock, settles them.
func TestReconcilerRevokesMisfitsOfABusyAccount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newMisfitSetup(t)
	a, b, st, kv, pub, d1 := s.a, s.b, s.st, s.kv, s.pub, s.d1
	st.arm(pub, 1, nil)
	_, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Roles: map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: []string{bySite}}}}})
	if err == nil || errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("instance b's change, killed before its put-back: %v, want the put-back's failure", err)
	}
	b.Close()
	const settle = 3 * time.Second
	a.SetMisfitsSettle(settle)
	revoked := func() bool {
		got, err := kv.AccountLatest(ctx, pub)
		if err != nil {
			t.Fatal(err)
		}
		c, err := jwt.DecodeAccountClaims(got.JWT)
		if err != nil {
			t.Fatal(err)
		}
		if templateOf(got.JWT, "device") != bySite {
			t.Fatalf("the store holds template %q, want the refused change", templateOf(got.JWT, "device"))
		}
		return c.Revocations.IsRevoked(d1.User.PublicKey, time.Unix(userIssued(t, d1.User.JWT), 0))
	}
	start := time.Now()
	for i := 0; time.Since(start) < 3*settle; i++ {
		desc := fmt.Sprintf("busy %d", i)
		if _, err := a.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: &desc}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
		if revoked() {
			if since := time.Since(start); since < settle {
				t.Fatalf("the pass revoked user %s %s after its misfit was first seen, before the settle (%s): an instance's put-back may still be on its way", d1.User.PublicKey, since.Round(time.Millisecond), settle)
			}
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("user %s tagged \"site:*\" under %q still not revoked after %s of passes on an account changed every second (settle %s)", d1.User.PublicKey, bySite, 3*settle, settle)
}
