package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
)

// TestForeignInboxIsSaidAtOnce: the service drops unanswered, and does not
// carry out, a request whose reply subject is a server subject, one of its
// own subjects or in its own inboxes (README). A connection whose inbox
// prefix makes every reply subject such a one (a system account user with
// nats.CustomInboxPrefix("$INBOX") or "prov.replies")
// sent each request, waited out its timeout and was told that the service
// "may still carry the request out", CreateUser naming a key to revoke,
// though nothing was done. The client refuses such a connection before
// sending, naming nats.CustomInboxPrefix.
func TestForeignInboxIsSaidAtOnce(t *testing.T) {
	t.Parallel()
	env, c := started(t, bootstrap.Options{})
	creds := provtest.SystemUserCreds(t, env.Init.Dir, env.Init.SystemAccount, "wide", nil)
	for _, prefix := range []string{"$INBOX", api.DefaultPrefix + ".replies", api.DefaultPrefix} {
		bad := client.New(env.Connect(t, creds, nats.CustomInboxPrefix(prefix)), client.WithTimeout(3*time.Second))
		began := time.Now()
		_, err := bad.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "acme"})
		if err == nil || !strings.Contains(err.Error(), "CustomInboxPrefix") || !strings.Contains(err.Error(), "not sent") || strings.Contains(err.Error(), "may still carry") || time.Since(began) > 2*time.Second {
			t.Fatalf("inbox prefix %q: a create: %v after %s, want at once that nothing was sent, naming CustomInboxPrefix", prefix, err, time.Since(began).Round(time.Millisecond))
		}
		_, err = bad.CreateUser(context.Background(), api.CreateUserRequest{Account: "acme", Name: "alice"})
		var doubt *client.UserInDoubtError
		if err == nil || errors.As(err, &doubt) {
			t.Errorf("inbox prefix %q: CreateUser: %v, want an error and no key in doubt", prefix, err)
		}
	}
	if _, err := c.GetAccount(context.Background(), api.AccountRequest{Account: "acme"}); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("GetAccount after the refused creates: %v, want ErrNotFound", err)
	}
	// A prefix that only starts like one of those is answered.
	ok := client.New(env.Connect(t, creds, nats.CustomInboxPrefix(api.DefaultPrefix+"x")))
	if _, err := ok.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatalf("inbox prefix %q: %v", api.DefaultPrefix+"x", err)
	}
}
