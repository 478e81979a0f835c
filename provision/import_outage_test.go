package provision_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
)

// TestImportOfAForeignAccountWhileItsServerIsDown: an account this service
// does not manage was pushed while node-b was down, so only node-a holds
// it (the servers sync every 2 minutes). With node-a down, node-b answers
// the LOOKUP without it: an import of it was refused 400 "no server knows
// account", telling the caller of an outage that the account does not
// exist. A server that did not answer may hold it: the import fails as an
// outage, to be retried.
func TestImportOfAForeignAccountWhileItsServerIsDown(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, res, 2)
	a, b := nodes[0], nodes[1]
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()

	b.srv.Stop()
	waitServers(t, d.rc, 5*time.Second, "node-b down", map[string]bool{"node-a": true, "node-b": false})
	op, err := provision.LoadOperator(filepath.Join(res.Dir, bootstrap.OperatorJWTFile), filepath.Join(res.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateAccount()
	pub, _ := kp.PublicKey()
	fc := jwt.NewAccountClaims(pub)
	fc.Name = "foreign"
	fc.Exports.Add(&jwt.Export{Subject: "feed.>", Type: jwt.Stream})
	token, err := fc.Encode(op.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.rc.Update(ctx, token); err != nil {
		t.Fatal(err)
	}
	b.start()
	waitServers(t, d.rc, 10*time.Second, "node-b back", map[string]bool{"node-a": true, "node-b": true})
	a.srv.Stop()
	waitServers(t, d.rc, 10*time.Second, "node-a down", map[string]bool{"node-a": false, "node-b": true})
	// The client's connection moves to node-b: wait until it answers.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		copies, err := d.rc.LookupAll(ctx, pub)
		if err == nil {
			if len(copies) != 1 || copies[0] != "" {
				t.Fatalf("node-b's copies of the foreign account: %q, want one empty", copies)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-b does not answer a LOOKUP: %v", err)
		}
	}

	_, err = d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "importer", Imports: jwt.Imports{{Account: pub, Subject: "feed.>", Type: jwt.Stream}}})
	if err == nil {
		t.Fatal("the import succeeded though no server up holds the exporter")
	}
	if errors.Is(err, provision.ErrInvalid) || !(errors.Is(err, provision.ErrTimeout) || errors.Is(err, provision.ErrUnavailable)) {
		t.Errorf("import of an account held only by a server that is down: %v (invalid: %v); want an outage (503/504)", err, errors.Is(err, provision.ErrInvalid))
	}
}
