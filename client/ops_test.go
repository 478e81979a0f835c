package client_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestEveryEndpoint covers the client's methods beyond accounts and users:
// rotation, reconcile, status, audit, operator rotation, and self-service
// from a tenant's own connection.
func TestEveryEndpoint(t *testing.T) {
	t.Parallel()
	env, c := started(t, bootstrap.Options{})
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{
		Name:        "acme",
		Roles:       map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: jwt.StringList{"telemetry.>"}}}, "enroller": {}},
		SelfService: true, SelfServiceRole: "enroller",
	}); err != nil {
		t.Fatal(err)
	}
	rot, err := c.RotateAccount(ctx, api.RotateAccountRequest{Account: "acme"})
	if err != nil || len(rot.SigningKeys) != 3 || len(rot.Retired) != 3 {
		t.Fatalf("RotateAccount = %+v, %v; want 3 new keys and 3 retired", rot, err)
	}
	rec, err := c.Reconcile(ctx)
	if err != nil || rec.Accounts != 1 || rec.Failed != 0 {
		t.Fatalf("Reconcile = %+v, %v", rec, err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Store != "file" || st.Role != "leader" || st.Version != service.Version {
		t.Fatalf("Status = %+v, %v; want the file store, the leader and version %s", st, err, service.Version)
	}
	if _, err := c.Audit(ctx, api.AuditRequest{}); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Audit on the file store: %v, want ErrNotFound (no audit stream)", err)
	}
	if _, err := c.RotateOperator(ctx); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("RotateOperator without a next key: %v, want ErrInvalid", err)
	}

	// A tenant's backend, with its own creds, on its own account.
	backend, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "backend", Role: "enroller"})
	if err != nil {
		t.Fatal(err)
	}
	tenant := client.New(env.Connect(t, writeCreds(t, backend.Creds.Bytes())))
	dev, err := tenant.SelfCreateUser(ctx, api.SelfCreateUserRequest{Name: "d1", Role: "device"})
	if err != nil {
		t.Fatalf("SelfCreateUser: %v", err)
	}
	if dev.Seed.IsZero() {
		t.Fatal("SelfCreateUser did not make the key here")
	}
	env.Connect(t, writeCreds(t, dev.Creds.Bytes())).Close()
	list, err := tenant.SelfListUsers(ctx, api.SelfListUsersRequest{})
	if err != nil || list.Total != 2 {
		t.Fatalf("SelfListUsers = %+v, %v", list, err)
	}
	if _, err := tenant.SelfRevokeUser(ctx, api.SelfRevokeUserRequest{User: "d1"}); err != nil {
		t.Fatalf("SelfRevokeUser: %v", err)
	}
	if _, err := tenant.SelfRevokeUser(ctx, api.SelfRevokeUserRequest{User: "backend"}); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("a tenant revoking an admin-issued user: %v, want ErrForbidden", err)
	}
}

// TestSelfRevokeRefusesAnAdminIssuedUser: a tenant may revoke only the
// users issued through self-service. Named by its key, an admin-issued user
// was refused 403 ("an admin revokes it"); named by its name, the same user
// (which self.user.list shows the tenant, active) got 404 "has no active
// user named": untrue, and another code for the same refusal. Both are 403
// now, naming why, and the user stays active.
func TestSelfRevokeRefusesAnAdminIssuedUser(t *testing.T) {
	t.Parallel()
	_, tenant := selfTenant(t)
	ctx := context.Background()
	list, err := tenant.SelfListUsers(ctx, api.SelfListUsersRequest{})
	if err != nil || len(list.Users) != 1 || list.Users[0].Name != "backend" {
		t.Fatalf("SelfListUsers = %+v, %v; want the backend", list, err)
	}
	for _, ref := range []string{"backend", list.Users[0].PublicKey} {
		_, err := tenant.SelfRevokeUser(ctx, api.SelfRevokeUserRequest{User: ref})
		if !errors.Is(err, client.ErrForbidden) || !strings.Contains(err.Error(), "self-service") {
			t.Errorf("a tenant revoking the admin-issued user as %q: %v, want ErrForbidden saying it was not issued through self-service", ref, err)
		}
	}
	list, err = tenant.SelfListUsers(ctx, api.SelfListUsersRequest{})
	if err != nil || len(list.Users) != 1 || list.Users[0].Revoked {
		t.Fatalf("after the refusals SelfListUsers = %+v, %v; want the backend active", list, err)
	}
}

// selfTenant creates an account with self-service and returns a client on
// the connection of one of its users in the enroller role.
func selfTenant(t *testing.T) (*provtest.Env, *client.Client) {
	t.Helper()
	env, c := started(t, bootstrap.Options{})
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{
		Name:        "acme",
		Roles:       map[string]*api.Role{"device": {}, "enroller": {}},
		SelfService: true, SelfServiceRole: "enroller",
	}); err != nil {
		t.Fatal(err)
	}
	backend, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "backend", Role: "enroller"})
	if err != nil {
		t.Fatal(err)
	}
	return env, client.New(env.Connect(t, writeCreds(t, backend.Creds.Bytes())))
}

// TestSelfCreateUserRefusesASeed: a seed given as the public key is
// refused before anything is sent, as CreateUser does; the service's own
// account (which sees every self-service request) sees only the request
// that follows it.
func TestSelfCreateUserRefusesASeed(t *testing.T) {
	t.Parallel()
	env, tenant := selfTenant(t)
	ctx := context.Background()
	var mu sync.Mutex
	var seen [][]byte
	svc := env.ServiceUser(t)
	if _, err := svc.Subscribe("prov.self.*.user.create", func(m *nats.Msg) {
		mu.Lock()
		seen = append(seen, m.Data)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := svc.LastError(); err != nil {
		t.Fatalf("the tap's subscription: %v", err)
	}
	kp, _ := nkeys.CreateUser()
	defer kp.Wipe()
	seed, _ := kp.Seed()
	_, err := tenant.SelfCreateUser(ctx, api.SelfCreateUserRequest{Name: "d1", Role: "device", PublicKey: " " + string(seed)})
	if !errors.Is(err, client.ErrInvalid) || strings.Contains(err.Error(), string(seed)) {
		t.Fatalf("a seed as public_key: %v", err)
	}
	other, _ := nkeys.CreateUser()
	defer other.Wipe()
	pub, _ := other.PublicKey()
	if _, err := tenant.SelfCreateUser(ctx, api.SelfCreateUserRequest{Name: "d2", Role: "device", PublicKey: pub}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := slices.Clone(seen)
		mu.Unlock()
		for _, data := range got {
			if bytes.Contains(data, seed) {
				t.Fatalf("the seed crossed the wire: %s", data)
			}
		}
		if len(got) > 0 && bytes.Contains(got[len(got)-1], []byte(pub)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service account saw %d requests, none with %s", len(got), pub)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestXKeyWithALocalKey: an xkey asks the service to seal a seed it makes;
// the client makes the key itself, so no seed travels and there is nothing
// to seal. CreateUser and SelfCreateUser issue the user (the xkey is not
// sent) instead of failing on a request the caller did not write.
func TestXKeyWithALocalKey(t *testing.T) {
	t.Parallel()
	env, tenant := selfTenant(t)
	c := client.New(env.Admin(t))
	ctx := context.Background()
	curve, _ := nkeys.CreateCurveKeys()
	defer curve.Wipe()
	xkey, _ := curve.PublicKey()
	tests := []struct {
		name string
		call func() (*client.User, error)
	}{
		{"CreateUser", func() (*client.User, error) {
			return c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice", XKey: xkey})
		}},
		{"SelfCreateUser", func() (*client.User, error) {
			return tenant.SelfCreateUser(ctx, api.SelfCreateUserRequest{Name: "d1", Role: "device", XKey: xkey})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := tt.call()
			if err != nil {
				t.Fatalf("with an xkey: %v", err)
			}
			defer u.Wipe()
			if u.Seed.IsZero() || u.Creds.IsZero() {
				t.Fatalf("no seed or creds made here: %+v", u)
			}
			env.Connect(t, writeCreds(t, u.Creds.Bytes())).Close()
		})
	}
}

// TestSelfServiceOffIsNoService: a tenant whose account has no
// self_service has no import of the self-service subjects, so its request
// finds no responder while the service runs. The client said only "is the
// service running, with subject prefix?", sending a developer after a
// service that runs; it names the account's self_service.
func TestSelfServiceOffIsNoService(t *testing.T) {
	t.Parallel()
	env, c := started(t, bootstrap.Options{})
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "plain", Roles: map[string]*api.Role{"device": {}}}); err != nil {
		t.Fatal(err)
	}
	u, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "plain", Name: "backend"})
	if err != nil {
		t.Fatal(err)
	}
	tenant := client.New(env.Connect(t, writeCreds(t, u.Creds.Bytes())))
	_, err = tenant.SelfListUsers(ctx, api.SelfListUsersRequest{})
	if !errors.Is(err, client.ErrNoService) || !strings.Contains(err.Error(), "self_service") {
		t.Fatalf("a tenant without self-service: %v, want ErrNoService naming the account's self_service", err)
	}
	// The admin's requests keep the plain hint.
	if _, err := client.New(env.Admin(t), client.WithPrefix("prov.other")).Status(ctx); !errors.Is(err, client.ErrNoService) || strings.Contains(err.Error(), "self_service") {
		t.Errorf("no service on another prefix: %v", err)
	}
}

// TestInstanceStatusRefusesABadInstanceName: an instance name is letters,
// digits, _ and - (the config's rule). InstanceStatus sent any string: ""
// (the Instance of a reconcile reply that ran its pass) went to
// prov.status., which the server drops, and the call waited out its whole
// timeout to say that the service "may still carry the request out"; "*"
// said no provisioner runs.
func TestInstanceStatusRefusesABadInstanceName(t *testing.T) {
	t.Parallel()
	_, c := started(t, bootstrap.Options{})
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := c.InstanceStatus(context.Background(), st.Instance); err != nil || rep.Instance != st.Instance {
		t.Fatalf("InstanceStatus(%q): %+v, %v", st.Instance, rep, err)
	}
	for _, name := range []string{"", "*", ">", "a.b", "a b"} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		began := time.Now()
		_, err := c.InstanceStatus(ctx, name)
		cancel()
		if !errors.Is(err, client.ErrInvalid) || time.Since(began) > time.Second || !strings.Contains(err.Error(), "nothing was sent") {
			t.Errorf("InstanceStatus(%q): %v after %s, want ErrInvalid at once, nothing sent", name, err, time.Since(began).Round(time.Millisecond))
		}
	}
}
