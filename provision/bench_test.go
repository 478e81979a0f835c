package provision_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// BenchmarkCreateUser measures issuing a user with a generated key: the
// work of user.create minus the NATS round trip.
func BenchmarkCreateUser(b *testing.B) {
	env := provtest.Deployment(b, bootstrap.Options{})
	env.Config.LogLevel = "error"
	svc := env.Start(b)
	ctx := context.Background()
	if _, err := svc.Provision.CreateAccount(ctx, api.CreateAccountRequest{Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := svc.Provision.CreateUser(ctx, api.CreateUserRequest{Account: "bench", Name: fmt.Sprint("u", i)}); err != nil {
			b.Fatal(err)
		}
	}
}
