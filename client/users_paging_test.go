package client_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
)

// TestUsersAcrossTwoInstances: two instances share the KV bucket, and
// users are issued through both at once. Each instance listed the users
// in the order their records reached its mirror (its own writes first,
// the other's when its watcher brought them), so the pages of one Users
// iteration, answered by either instance (the queue group shares them),
// skipped some users and repeated others. Every instance lists them in
// the same order, and Users yields each once.
func TestUsersAcrossTwoInstances(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	env.Start(t)
	env.Start(t)
	c := client.New(env.Admin(t))
	ctx := context.Background()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	const n, workers = 60, 12
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				u, err := c.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: fmt.Sprintf("u%02d", i)})
				if err != nil {
					errs <- err
					return
				}
				u.Wipe()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for round := range 10 {
		seen := map[string]int{}
		for u, err := range c.Users(ctx, api.ListUsersRequest{Account: "acme", ListRequest: api.ListRequest{Limit: 3}}) {
			if err != nil {
				t.Fatal(err)
			}
			seen[u.Name]++
		}
		var wrong []string
		for i := range n {
			if name := fmt.Sprintf("u%02d", i); seen[name] != 1 {
				wrong = append(wrong, fmt.Sprintf("%s %d times", name, seen[name]))
			}
		}
		if len(wrong) > 0 {
			t.Fatalf("round %d: Users yielded %v", round, wrong)
		}
	}
}
