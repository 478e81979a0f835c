package provision_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// playerCreds writes the creds of a system account user allowed
// everything, signed by the system account's signing key Init puts aside:
// it plays a server on the real bus.
func playerCreds(t *testing.T, res *bootstrap.Result, name string) string {
	t.Helper()
	return provtest.SystemUserCreds(t, res.Dir, res.SystemAccount, name, nil)
}

// TestDeleteWaitsForConfirmationsByName: zz-hung is a known server whose
// resolver got stuck (it answers pings, nothing else since the create's
// push) and has not confirmed
// a deleted account's disabled version. A second instance (no
// confirmations in memory) sweeps the account with a LOOKUP while a server
// it does not know yet (one that joined during the pass, holding the
// disabled version) answers it too. LOOKUP replies do not say which server
// sent them: the answers count as many as the servers up, all the
// disabled version, but zz-hung is not among them. The DELETE must still
// wait until zz-hung has confirmed the disabled version: sent before, a
// server that holds the live version and misses the DELETE spreads it back
// to every server by resolver sync (the others deleted the account, so
// they take it).
func TestDeleteWaitsForConfirmationsByName(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	ctx := context.Background()
	const hungName, hungID = "zz-hung", "NHUNGSERVERFORLOOKUPCREDIT"
	player := env.Connect(t, playerCreds(t, env.Init, "player"))
	if _, err := player.Subscribe(resolver.SubjectServerPing, func(m *nats.Msg) {
		_ = m.Respond(fmt.Appendf(nil, `{"name":%q,"host":"127.0.0.1","id":%q}`, hungName, hungID))
	}); err != nil {
		t.Fatal(err)
	}
	// It answers its first push (the create's): a server that never
	// answered a claims request is taken for one whose resolver answers
	// none (MEMORY or URL), and nothing waits for it.
	var answered atomic.Bool
	if _, err := player.Subscribe(resolver.SubjectClaimsUpdate, func(m *nats.Msg) {
		if answered.CompareAndSwap(false, true) {
			_ = m.Respond(fmt.Appendf(nil, `{"data":{"code":200,"message":"jwt updated"},"server":{"name":%q,"host":"127.0.0.1","id":%q}}`, hungName, hungID))
		}
	}); err != nil {
		t.Fatal(err)
	}
	var deletes atomic.Int32
	if _, err := player.Subscribe(resolver.SubjectClaimsDelete, func(*nats.Msg) { deletes.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := player.Flush(); err != nil {
		t.Fatal(err)
	}

	d := newDomain(t, env, nil)
	if s := d.rc.Servers(); len(s) != 2 || s[1].Name != hungName || !s[1].Up {
		t.Fatalf("Servers() = %+v, want the real server and %s, up", s, hungName)
	}
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != string(provision.PhaseDisabled) || deletes.Load() != 0 {
		t.Fatalf("delete: phase %s waiting %v, %d DELETEs; want disabled waiting for %s, no DELETE", rep.Phase, rep.Waiting, deletes.Load(), hungName)
	}
	tomb, err := d.store.Account(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	// The server that joined: it holds the disabled version (resolver
	// sync) and answers the LOOKUP, not yet the pings.
	if _, err := player.Subscribe(fmt.Sprintf("$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP", pub), func(m *nats.Msg) {
		_ = m.Respond([]byte(tomb.JWT))
	}); err != nil {
		t.Fatal(err)
	}
	if err := player.Flush(); err != nil {
		t.Fatal(err)
	}

	other := domainOver(t, env, d.store, d.rc)
	if _, err := other.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if n := deletes.Load(); n != 0 {
		t.Errorf("the pass sent the DELETE (%s got %d) although %s never confirmed the disabled version: a LOOKUP answer from another server was counted as its", hungName, n, hungName)
	}
	if cur, err := d.store.Account(ctx, pub); err != nil || cur.Phase != provision.PhaseDisabled {
		t.Errorf("tombstone after the pass: %v %v, want disabled (waiting for %s)", cur.Phase, err, hungName)
	}
}

// TestRotationCountsARemoteResignOnlyWhereStored: zz-hung trusts the new
// operator signing key (its VARZ says so) but its resolver is stuck: it
// answers no LOOKUP and no push. The rotation re-signs the system account
// and the service's own, which no reconciler pushes again: it must not
// report them re-signed (failed empty, "nothing left to do") while a
// server that holds the old key's copy, as far as anyone can tell, never
// got the new one.
func TestRotationCountsARemoteResignOnlyWhereStored(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	keyPath := nextSigningKey(t, env)
	raw, err := os.ReadFile(filepath.Join(env.Dir, bootstrap.OperatorJWTFile))
	if err != nil {
		t.Fatal(err)
	}
	opJWT, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := jwt.DecodeOperatorClaims(opJWT)
	if err != nil {
		t.Fatal(err)
	}
	const hungName, hungID = "zz-hung", "NHUNGSERVERFORROTATION"
	server := map[string]string{"name": hungName, "host": "127.0.0.1", "id": hungID}
	varz, err := json.Marshal(map[string]any{"server": server, "data": map[string]any{"trusted_operators_claim": []*jwt.OperatorClaims{oc}}})
	if err != nil {
		t.Fatal(err)
	}
	idz, _ := json.Marshal(server)
	player := env.Connect(t, playerCreds(t, env.Init, "player"))
	for subject, reply := range map[string][]byte{resolver.SubjectServerPing: idz, resolver.SubjectServerVarz: varz} {
		if _, err := player.Subscribe(subject, func(m *nats.Msg) { _ = m.Respond(reply) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := player.Flush(); err != nil {
		t.Fatal(err)
	}

	d := newDomain(t, env, nil)
	defer d.stop()
	if s := d.rc.Servers(); len(s) != 2 || s[1].Name != hungName || !s[1].Up {
		t.Fatalf("Servers() = %+v, want the real server and %s, up", s, hungName)
	}
	next := func() (*provision.Operator, error) {
		return provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), keyPath)
	}
	svc, err := provision.New(provision.Config{Operator: d.op, NextOperator: next, Store: d.store, Resolver: d.rc, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	rep, err := svc.RotateOperator(context.Background(), api.RotateOperatorRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, pub := range []string{env.Init.SystemAccount, env.Init.ServiceAccount} {
		if !slices.Contains(rep.Failed, pub) {
			t.Errorf("rotation: %d of %d re-signed, failed %v; want %s failed: %s never confirmed its new version", rep.Resigned, rep.Accounts, rep.Failed, pub, hungName)
		}
	}
}
