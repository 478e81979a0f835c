package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/testenv"
)

// TestCreateUserInDoubtNamesTheKey: with the server paused, CreateUser's
// context ends before the answer. The client had wiped the key and said
// only that the service "may still carry the request out": the caller
// could not tell the user it finds from another's, nor fence a request
// still on its way (revoking a key before it is issued keeps it from being
// issued). The error names the key sent, which revokes it. The service
// itself, reached after the caller's deadline (api.DeadlineHeader), does
// not issue it: a user nobody holds the seed of kept the name before.
func TestCreateUserInDoubtNamesTheKey(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	server := env.RealServer(t)
	env.Start(t)
	c := client.New(env.Admin(t))
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	testenv.Pause(t, server)
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	began := time.Now()
	_, err := c.CreateUser(short, api.CreateUserRequest{Account: "acme", Name: "alice"})
	took := time.Since(began)
	server.Signal(syscall.SIGCONT)
	if !errors.Is(err, context.DeadlineExceeded) || took > 3*time.Second {
		t.Fatalf("CreateUser with the server paused: %v after %s, want context.DeadlineExceeded after about 1s", err, took)
	}
	var doubt *client.UserInDoubtError
	if !errors.As(err, &doubt) || !nkeys.IsValidPublicUserKey(doubt.PublicKey) || !strings.Contains(err.Error(), doubt.PublicKey) {
		t.Fatalf("got %v, want a *client.UserInDoubtError naming the user key sent", err)
	}
	// The server goes on and delivers the request it kept, late; the next
	// create comes behind it on the same subscription.
	if _, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	rep, err := c.ListUsers(ctx, api.ListUsersRequest{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Users) != 1 || rep.Users[0].Name != "bob" {
		t.Fatalf("listed %+v, want bob alone: alice's request came after its caller's deadline", rep.Users)
	}
	if _, err := c.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: doubt.PublicKey}); err != nil {
		t.Fatalf("revoke the key in doubt: %v", err)
	}
	if _, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice"}); err != nil {
		t.Fatalf("alice again, once the key in doubt is revoked: %v", err)
	}
	// Nothing in doubt: nothing sent, or a refusal.
	_, err = c.CreateUser(ctx, api.CreateUserRequest{Account: "nobody", Name: "bob"})
	if !errors.Is(err, client.ErrNotFound) || errors.As(err, &doubt) {
		t.Errorf("a refused create: %v, want ErrNotFound and no key in doubt", err)
	}
	done, stop := context.WithCancel(ctx)
	stop()
	if _, err := c.CreateUser(done, api.CreateUserRequest{Account: "acme", Name: "carol"}); !errors.Is(err, context.Canceled) || errors.As(err, &doubt) {
		t.Errorf("a create never sent: %v, want context.Canceled and no key in doubt", err)
	}
}

// TestCreateUserOnAClosedConnectionIsNotInDoubt: a connection the caller
// closed sends nothing (nats.go refuses to publish on it), but CreateUser
// reported its key in doubt, as for a connection lost while the request
// waited: the caller was told to revoke a key the service never saw.
func TestCreateUserOnAClosedConnectionIsNotInDoubt(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.Start(t)
	nc := env.Admin(t)
	c := client.New(nc)
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	_, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice"})
	var doubt *client.UserInDoubtError
	if err == nil || errors.As(err, &doubt) || strings.Contains(err.Error(), "may still carry") {
		t.Fatalf("CreateUser on a closed connection: %v, want an error that nothing was sent and no key in doubt", err)
	}
	if !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("got %v, want it to match nats.ErrConnectionClosed", err)
	}
}

// TestCreateUserUnreadableReplyNamesTheKey: a user.create answered with a
// success the client cannot read (a field of another type, as a newer or
// broken service may send; a user JWT that does not decode) says nothing
// of whether the key sent was issued, and the seed is gone with the call:
// the error said only that the reply was not what the client expects,
// and the key the service may have issued was named nowhere a caller
// could find it. It is a *client.UserInDoubtError naming the key.
func TestCreateUserUnreadableReplyNamesTheKey(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	nc := env.Connect(t, env.Init.ProvisionerCreds)
	var mu sync.Mutex
	var reply func(pub string) string
	sent := make(chan string, 4)
	if _, err := nc.Subscribe("prov.user.create", func(m *nats.Msg) {
		var req api.CreateUserRequest
		json.Unmarshal(m.Data, &req)
		sent <- req.PublicKey
		mu.Lock()
		r := reply
		mu.Unlock()
		m.Respond([]byte(r(req.PublicKey)))
	}); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	c := client.New(env.Admin(t))
	for _, tt := range []struct {
		name  string
		reply func(pub string) string
	}{
		{"a field of another type", func(pub string) string { return `{"user":{"name":"alice","public_key":7}}` }},
		{"a JWT that does not decode", func(pub string) string {
			return `{"user":{"name":"alice","public_key":"` + pub + `","jwt":"not.a.jwt"}}`
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			reply = tt.reply
			mu.Unlock()
			_, err := c.CreateUser(context.Background(), api.CreateUserRequest{Account: "acme", Name: "alice"})
			pub := <-sent
			var doubt *client.UserInDoubtError
			if !errors.As(err, &doubt) || doubt.PublicKey != pub || !strings.Contains(err.Error(), pub) {
				t.Fatalf("got %v, want a *client.UserInDoubtError naming the key sent, %s", err, pub)
			}
		})
	}
}
