package client_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
)

// issuedUser is a caller's own type that keeps a user in an unexported
// field: fmt cannot call the Secret's methods there (reflection may not
// call methods through unexported fields), and prints what it finds.
type issuedUser struct {
	account string
	user    client.User
	seed    client.Secret
}

// TestSecretsDoNotPrintInsideUnexportedFields: a User or a Secret kept in
// an unexported field of the caller's own struct does not print its seed
// or creds when that struct is printed or logged (slog's text handler
// prints with %+v).
func TestSecretsDoNotPrintInsideUnexportedFields(t *testing.T) {
	t.Parallel()
	_, c := started(t, bootstrap.Options{})
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	u, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Wipe()
	seed := string(u.Seed.Bytes())
	h := issuedUser{account: "acme", user: *u, seed: u.Seed}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("issued", "user", h)
	outs := []string{logged.String(), fmt.Sprintf("%v", &h)}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		outs = append(outs, fmt.Sprintf(verb, h))
	}
	for _, out := range outs {
		if strings.Contains(out, seed[:12]) || strings.Contains(strings.ToLower(out), fmt.Sprintf("%x", seed[:8])) ||
			strings.Contains(out, strings.Trim(fmt.Sprint([]byte(seed[:6])), "[]")) ||
			strings.Contains(out, strings.TrimSuffix(strings.TrimPrefix(fmt.Sprintf("%#v", []byte(seed[:6])), "[]byte{"), "}")) {
			t.Errorf("a seed shows in %q", out)
		}
	}
}
