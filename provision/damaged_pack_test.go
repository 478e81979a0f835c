package provision_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestCreateWithAKeyOfADamagedPackIsRefused: a pack of user records
// (upack.) damaged in the bucket cannot say which users it held, and an
// instance started since found no record of their keys: a user.create
// with one of them as its public_key issued that key a second time. It is
// refused as unreadable (503), naming the pack, until the pack is put
// back whole or removed.
func TestCreateWithAKeyOfADamagedPackIsRefused(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	a, _ := kvDomainOf(t, env, "a", nil)
	ctx := context.Background()
	if _, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	// A key the service makes is recorded in the background, in a pack.
	issued, err := a.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "packed"})
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(env.ServiceUser(t))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, env.Config.KVBucket)
	if err != nil {
		t.Fatal(err)
	}
	var pack string
	deadline := time.Now().Add(10 * time.Second)
	for pack == "" {
		keys, err := kv.ListKeysFiltered(ctx, "upack.>")
		if err != nil {
			t.Fatal(err)
		}
		for k := range keys.Keys() {
			pack = k
		}
		if pack == "" && time.Now().After(deadline) {
			t.Fatal("no pack of user records stored in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := kv.Put(ctx, pack, []byte("{damaged")); err != nil {
		t.Fatal(err)
	}
	b, _ := kvDomainOf(t, env, "b", nil)
	again, err := b.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "again", PublicKey: issued.User.PublicKey})
	t.Logf("create with the key of a user of the damaged pack: %v", err)
	switch {
	case err == nil:
		t.Fatalf("create with the key of a user of the damaged pack, on an instance started since: issued again (%s), want it refused", again.User.PublicKey)
	case !errors.Is(err, provision.ErrUnreadable) || !strings.Contains(err.Error(), pack):
		t.Errorf("create with the key of a user of the damaged pack: %v, want ErrUnreadable naming %s", err, pack)
	}
}
