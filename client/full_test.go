package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
)

// TestStoreFull: with the service account's JetStream storage limit
// lowered below what its bucket holds (as an operator's nsc edit would),
// account.create and user.create fail with 507 (client.ErrStoreFull),
// hand out no creds and change nothing; with the limit raised again they
// work. The description does not leak the store's internals.
func TestStoreFull(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	env.Start(t)
	c := client.New(env.Admin(t))
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "tenant"}); err != nil {
		t.Fatal(err)
	}
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	m, err := sys.Request(fmt.Sprintf("$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP", env.Init.ServiceAccount), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	roomy := string(m.Data)
	ac, err := jwt.DecodeAccountClaims(roomy)
	if err != nil {
		t.Fatalf("the service account's JWT: %v", err)
	}
	seed, err := os.ReadFile(env.Config.OperatorSigningKey)
	if err != nil {
		t.Fatal(err)
	}
	opSigning, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		t.Fatal(err)
	}
	push := func(token string) {
		t.Helper()
		r, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(token), 5*time.Second)
		if err != nil || !strings.Contains(string(r.Data), `"code":200`) {
			t.Fatalf("push of the service account: %v %s", err, r.Data)
		}
	}
	// The disk of every tier init gave the account (one per replica
	// count).
	setDisk := func(disk int64) {
		for tier, l := range ac.Limits.JetStreamTieredLimits {
			l.DiskStorage = disk
			ac.Limits.JetStreamTieredLimits[tier] = l
		}
	}
	setDisk(1) // on, without room
	ac.IssuedAt = time.Now().Unix() + 1
	full, err := ac.Encode(opSigning)
	if err != nil {
		t.Fatal(err)
	}
	push(full)

	_, err = c.CreateUser(ctx, api.CreateUserRequest{Account: "tenant", Name: "bob"})
	var e *client.Error
	if !errors.Is(err, client.ErrStoreFull) || !errors.As(err, &e) || e.Code != api.CodeStoreFull {
		t.Fatalf("user.create with the store full: %v, want 507", err)
	}
	if !strings.Contains(e.Description, "store is full") || strings.Contains(e.Description, "nats:") {
		t.Errorf("description %q: want one that says the store is full, without internals", e.Description)
	}
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "no-room"}); !errors.Is(err, client.ErrStoreFull) {
		t.Fatalf("account.create with the store full: %v, want 507", err)
	}
	if _, err := c.GetAccount(ctx, api.AccountRequest{Account: "no-room"}); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("the refused account: %v, want not found", err)
	}
	users, err := c.ListUsers(ctx, api.ListUsersRequest{Account: "tenant"})
	if err != nil || len(users.Users) != 0 {
		t.Fatalf("users after the refusal: %v, %v", users, err)
	}

	setDisk(1 << 30)
	ac.IssuedAt = time.Now().Unix() + 2
	back, err := ac.Encode(opSigning)
	if err != nil {
		t.Fatal(err)
	}
	push(back)
	if _, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "tenant", Name: "bob"}); err != nil {
		t.Fatalf("user.create with room again: %v", err)
	}
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "no-room"}); err != nil {
		t.Fatalf("account.create with room again: %v", err)
	}
}
