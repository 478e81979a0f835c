package provision_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/provision"
)

// TestReconcilerRevokesUsersTheStandingVersionDoesNotFit: instance b's
// change of role "device" to "telemetry.{{tag(site)}}.>" is stored, then
// refused once b's reads of users catch up with user d1 tagged "site:*"
// that instance a issued under "telemetry.{{name()}}.>"; b is killed
// before its put-back is stored. The refused change stays in the store,
// any reconciler pushed it, and d1 got "telemetry.*.>", every site's
// subjects, with nothing to repair it. Another instance's reconciler pass
// now revokes d1 in a version of its own, stored and pushed.
func TestReconcilerRevokesUsersTheStandingVersionDoesNotFit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// b's reads of users do not hold d1 when it checks its change, only
	// once the change is stored (SeenThrough).
	s := newMisfitSetup(t)
	a, b, st, kv, rc, pub, d1 := s.a, s.b, s.st, s.kv, s.rc, s.pub, s.d1
	fits, err := a.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "d2", Tags: []string{"site:b"}, Role: "device"})
	if err != nil {
		t.Fatal(err)
	}
	st.arm(pub, 1, nil)
	_, err = b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Roles: map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: []string{bySite}}}}})
	if err == nil || errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("instance b's change, killed before its put-back: %v, want the put-back's failure", err)
	}
	b.Close()
	got, err := kv.AccountLatest(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if templateOf(got.JWT, "device") != bySite {
		t.Fatalf("the store holds template %q, want the refused change (b killed before its put-back)", templateOf(got.JWT, "device"))
	}
	// A version younger than a change may take is left to the instance
	// that stored it, which may still put it back.
	if _, err := a.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if now, err := kv.AccountLatest(ctx, pub); err != nil || now.JWT != got.JWT {
		t.Fatalf("a pass changed a version stored a moment ago (%v)", err)
	}
	// Past that, b is taken for dead.
	a.SetMisfitsSettle(0)
	if _, err := a.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	got, err = kv.AccountLatest(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	c, err := jwt.DecodeAccountClaims(got.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Revocations.IsRevoked(d1.User.PublicKey, time.Unix(userIssued(t, d1.User.JWT), 0)) {
		t.Fatalf("after a reconcile pass the store's version (template %q) does not revoke user %s tagged \"site:*\": it gets telemetry.*.>", templateOf(got.JWT, "device"), d1.User.PublicKey)
	}
	if c.Revocations.IsRevoked(fits.User.PublicKey, time.Unix(userIssued(t, fits.User.JWT), 0)) {
		t.Errorf("the pass revokes user %s, which fits the version that stands", fits.User.PublicKey)
	}
	on, err := rc.Lookup(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if on != got.JWT {
		t.Errorf("the server does not hold the version that revokes user %s", d1.User.PublicKey)
	}
}

// userIssued is the iat of a user JWT.
func userIssued(t *testing.T, token string) int64 {
	t.Helper()
	c, err := jwt.DecodeUserClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	return c.IssuedAt
}

// TestReconcilerRevokesMisfitsAfterALostPutBack: instance b's refused
// role change has another instance's version stored on top of it, so
// b's put-back loses (the change stands, README), and b is killed before
// it stores the revocation of the user the change was refused for. The
// next reconcile pass revokes that user.
func TestReconcilerRevokesMisfitsAfterALostPutBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newMisfitSetup(t)
	a, b, st, kv, pub, d1 := s.a, s.b, s.st, s.kv, s.pub, s.d1
	// b's put-back is written, and loses to a's version; the revocation
	// that follows it is not.
	st.arm(pub, 2, func() {
		desc := "on top"
		if _, err := a.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: &desc}); err != nil {
			t.Errorf("instance a's change on top of b's: %v", err)
		}
	})
	_, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Roles: map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: []string{bySite}}}}})
	if err == nil || errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("instance b's change, whose put-back lost: %v, want the put-back's failure", err)
	}
	b.Close()
	got, err := kv.AccountLatest(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	c, err := jwt.DecodeAccountClaims(got.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if templateOf(got.JWT, "device") != bySite || c.Description != "on top" || c.Revocations.IsRevoked(d1.User.PublicKey, time.Unix(userIssued(t, d1.User.JWT), 0)) {
		t.Fatalf("the store holds template %q, description %q: want a's version on top of the refused change, without the revocation b was killed before", templateOf(got.JWT, "device"), c.Description)
	}
	a.SetMisfitsSettle(0)
	if _, err := a.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	got, err = kv.AccountLatest(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if c, err = jwt.DecodeAccountClaims(got.JWT); err != nil {
		t.Fatal(err)
	}
	if !c.Revocations.IsRevoked(d1.User.PublicKey, time.Unix(userIssued(t, d1.User.JWT), 0)) {
		t.Fatalf("after a reconcile pass the store's version does not revoke user %s tagged \"site:*\" under %q", d1.User.PublicKey, templateOf(got.JWT, "device"))
	}
}
