package kvstore

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/resolver"
)

// ackGate is a dialer whose connections hold back everything the server
// sends, from the moment the client writes a KV write whose line holds
// match, for hold: a write whose acknowledgement is late (a server busy
// or electing a leader), stored all the same.
type ackGate struct {
	hold  time.Duration
	mu    sync.Mutex
	match []byte
	until time.Time
}

func (g *ackGate) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return &gatedConn{Conn: c, g: g}, nil
}

func (g *ackGate) arm(match string) {
	g.mu.Lock()
	g.match = []byte(match)
	g.mu.Unlock()
}

type gatedConn struct {
	net.Conn
	g *ackGate
}

func (c *gatedConn) Write(p []byte) (int, error) {
	c.g.mu.Lock()
	if c.g.match != nil {
		for _, line := range bytes.Split(p, []byte("\r\n")) {
			if bytes.Contains(line, []byte("PUB $KV.")) && bytes.Contains(line, c.g.match) {
				c.g.until = time.Now().Add(c.g.hold)
				c.g.match = nil
				break
			}
		}
	}
	c.g.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *gatedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.g.mu.Lock()
	wait := time.Until(c.g.until)
	c.g.mu.Unlock()
	if wait > 0 {
		time.Sleep(wait)
	}
	return n, err
}

// TestSelfUserWhoseLateRecordIsWithdrawnIsNotIssued: a self-service
// user's record (durable) was acknowledged only after the store's timeout;
// the store answered unavailable and withdraws such a record once it
// lands (its caller was told it is not stored). The service then read the
// key back to tell whether the record landed, found it (landed, the
// withdrawal not made yet) and handed out the user's creds; the
// withdrawal then deleted the record: a user with creds that the quota
// does not count and the tenant cannot revoke (404), its key free to be
// issued again.
func TestSelfUserWhoseLateRecordIsWithdrawnIsNotIssued(t *testing.T) {
	d := startDeployment(t, 1)
	seal, _ := newSealKey(t)
	gate := &ackGate{hold: 2500 * time.Millisecond}
	st := openStore(t, d.connect(t, d.svcCreds, nats.SetCustomDialer(gate)), Options{Seal: seal, Timeout: time.Second})
	// The withdrawal waits a while once it knows the record is stored
	// (longer than the service waits between two reads of the key).
	withdrawing := make(chan struct{})
	var once sync.Once
	st.fault = func(point string) error {
		if point == "withdraw: delete" {
			// Within the delete's own timeout (a second).
			once.Do(func() { close(withdrawing); time.Sleep(700 * time.Millisecond) })
		}
		return nil
	}
	seed, err := d.svcKeys[2].Seed()
	if err != nil {
		t.Fatal(err)
	}
	seedFile := filepath.Join(d.dir, "operator.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	op, err := provision.LoadOperator(filepath.Join(d.dir, "operator.jwt"), seedFile)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := resolver.New(context.Background(), d.connect(t, d.sysCreds), resolver.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	svcPub, _ := d.svcKeys[0].PublicKey()
	logger, _ := newLog(t)
	svc, err := provision.New(provision.Config{Operator: op, Store: st, Resolver: rc, Protected: []string{svcPub}, ServiceAccount: svcPub, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	ctx := bg(t)
	acc, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": {}}, SelfService: true, SelfServiceQuota: 1})
	if err != nil {
		t.Fatal(err)
	}
	tenant := provision.Tenant{Account: acc.Account.PublicKey}
	kp, _ := nkeys.CreateUser()
	k, _ := kp.PublicKey()

	gate.arm(k)
	_, cerr := svc.SelfCreateUser(ctx, tenant, api.SelfCreateUserRequest{Name: "d1", Role: "device", PublicKey: k})
	select {
	case <-withdrawing:
	case <-time.After(10 * time.Second):
		t.Fatalf("the record was never withdrawn (the create: %v): the test did not make its write late", cerr)
	}
	eventually(t, 10*time.Second, "the withdrawal done", func() bool {
		st.amu.Lock()
		defer st.amu.Unlock()
		return st.pending[userKey(k)] == nil
	})
	_, rerr := bucketUser(ctx, st, k)
	switch {
	case cerr == nil && rerr != nil:
		t.Fatalf("the self-service create handed out user %s, whose record the store then withdrew (%v): its creds are valid, the quota does not count it and the tenant cannot revoke it", k, rerr)
	case cerr != nil && !errors.Is(cerr, provision.ErrUnavailable):
		t.Fatalf("the create: %v, want 503 (its record was not stored) or success", cerr)
	}
	t.Logf("the create: %v", cerr)
}
