package client_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
)

// TestCreateUserChecksTheReply answers user.create with hand-made replies
// on a real connection: a reply whose JWT is not for the key the request
// sent, or is signed for another account than the one the request named
// by key, is refused, whether the client made the key or the caller gave
// it; the JWT the service would send is accepted.
func TestCreateUserChecksTheReply(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	acct, _ := nkeys.CreateAccount()
	acctPub, _ := acct.PublicKey()
	other, _ := nkeys.CreateAccount()
	otherPub, _ := other.PublicKey()
	signer, _ := nkeys.CreateAccount() // a signing key of acct
	stranger, _ := nkeys.CreateUser()
	strangerPub, _ := stranger.PublicKey()

	// answer makes the reply to a request for the user key pub.
	var mu sync.Mutex
	var answer func(pub string) api.User
	nc := env.Connect(t, env.Init.ProvisionerCreds)
	if _, err := nc.Subscribe("prov.user.create", func(m *nats.Msg) {
		var req api.CreateUserRequest
		json.Unmarshal(m.Data, &req)
		mu.Lock()
		u := answer(req.PublicKey)
		mu.Unlock()
		data, _ := json.Marshal(api.CreateUserReply{User: u})
		m.Respond(data)
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// issued returns a user JWT for sub signed by kp, on behalf of
	// issuerAccount when kp is a signing key.
	issued := func(sub string, kp nkeys.KeyPair, issuerAccount string) string {
		uc := jwt.NewUserClaims(sub)
		uc.Name = "alice"
		uc.IssuerAccount = issuerAccount
		token, err := uc.Encode(kp)
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	c := client.New(env.Admin(t))
	ctx := context.Background()
	tests := []struct {
		name   string
		answer func(pub string) api.User
		ok     bool
	}{
		{"the key sent, signed by the account", func(pub string) api.User {
			return api.User{Name: "alice", PublicKey: pub, JWT: issued(pub, acct, "")}
		}, true},
		{"the key sent, signed by a signing key of the account", func(pub string) api.User {
			return api.User{Name: "alice", PublicKey: pub, JWT: issued(pub, signer, acctPub)}
		}, true},
		{"another key", func(string) api.User {
			return api.User{Name: "alice", PublicKey: strangerPub, JWT: issued(strangerPub, acct, "")}
		}, false},
		{"the key sent named, a JWT for another key", func(pub string) api.User {
			return api.User{Name: "alice", PublicKey: pub, JWT: issued(strangerPub, acct, "")}
		}, false},
		{"another account", func(pub string) api.User {
			return api.User{Name: "alice", PublicKey: pub, JWT: issued(pub, other, "")}
		}, false},
		{"a signing key of another account", func(pub string) api.User {
			return api.User{Name: "alice", PublicKey: pub, JWT: issued(pub, signer, otherPub)}
		}, false},
		{"no JWT", func(pub string) api.User {
			return api.User{Name: "alice", PublicKey: pub}
		}, false},
	}
	for _, tt := range tests {
		for _, local := range []bool{true, false} {
			name := tt.name + ", caller's key"
			if local {
				name = tt.name + ", key made here"
			}
			t.Run(name, func(t *testing.T) {
				mu.Lock()
				answer = tt.answer
				mu.Unlock()
				req := api.CreateUserRequest{Account: acctPub, Name: "alice"}
				var pub string
				if !local {
					kp, _ := nkeys.CreateUser()
					defer kp.Wipe()
					pub, _ = kp.PublicKey()
					req.PublicKey = pub
				}
				u, err := c.CreateUser(ctx, req)
				if !tt.ok {
					if err == nil {
						t.Fatalf("accepted a reply for %s (JWT %s), want an error", u.PublicKey, u.JWT)
					}
					return
				}
				if err != nil {
					t.Fatalf("CreateUser: %v", err)
				}
				defer u.Wipe()
				if !local && u.PublicKey != pub {
					t.Errorf("CreateUser returned the key %s, want %s", u.PublicKey, pub)
				}
			})
		}
	}
}

// TestCreateUserByAccountKey: the service's own replies pass the check of
// the account named by key, for a user signed by the account's signing
// key and for one signed by a role's scoped key.
func TestCreateUserByAccountKey(t *testing.T) {
	t.Parallel()
	_, c := started(t, bootstrap.Options{})
	ctx := context.Background()
	acct, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": {}}})
	if err != nil {
		t.Fatal(err)
	}
	key := acct.Account.PublicKey
	for i, role := range []string{"", "device"} {
		u, err := c.CreateUser(ctx, api.CreateUserRequest{Account: key, Name: "local-" + role, Role: role})
		if err != nil {
			t.Fatalf("CreateUser(%s, role %q), key made here: %v", key, role, err)
		}
		u.Wipe()
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		kp.Wipe()
		if _, err := c.CreateUser(ctx, api.CreateUserRequest{Account: " " + key, Name: "own-" + role, Role: role, PublicKey: pub}); err != nil {
			t.Fatalf("%d: CreateUser(%s, role %q), caller's key: %v", i, key, role, err)
		}
	}
}
