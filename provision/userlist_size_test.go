package provision_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestUserListPagesFitMaxPayload: every page of user.list, followed by
// next_offset, must fit the servers' max_payload (the responder refuses a
// reply over max_payload-1024 with 500), also for users whose names JSON
// escapes ('<' becomes \u003c) and who carry a long role and an expiry;
// and the pages together list every user once.
func TestUserListPagesFitMaxPayload(t *testing.T) {
	t.Parallel()
	const (
		maxPayload = 256 << 10
		users      = 900
	)
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil, func(c *provision.Config) { c.MaxJWTSize = maxPayload })
	defer d.stop()
	ctx := context.Background()
	role := strings.Repeat("r", 64)
	tests := []struct {
		name string
		user func(acct string, i int) api.CreateUserRequest
	}{
		{"escaped names", func(acct string, i int) api.CreateUserRequest {
			return api.CreateUserRequest{Account: acct, Name: fmt.Sprintf("%s%04d", strings.Repeat("<", 120), i)}
		}},
		{"long role and expiry", func(acct string, i int) api.CreateUserRequest {
			return api.CreateUserRequest{Account: acct, Name: fmt.Sprintf("%s%04d", strings.Repeat("n", 120), i), Role: role, ExpiresIn: "1h"}
		}},
	}
	for ti, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acct := fmt.Sprintf("acme%d", ti)
			if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: acct, Roles: map[string]*api.Role{role: {}}}); err != nil {
				t.Fatal(err)
			}
			for i := range users {
				if _, err := d.svc.CreateUser(ctx, tt.user(acct, i)); err != nil {
					t.Fatal(err)
				}
			}
			seen := map[string]int{}
			for off, pages := 0, 0; ; pages++ {
				rep, err := d.svc.ListUsers(ctx, api.ListUsersRequest{Account: acct, ListRequest: api.ListRequest{Offset: off}})
				if err != nil {
					t.Fatal(err)
				}
				data, _ := json.Marshal(rep)
				if len(data) > maxPayload-1024 {
					t.Fatalf("page at offset %d with %d users is %d bytes, over max_payload-1024 = %d", off, len(rep.Users), len(data), maxPayload-1024)
				}
				for _, u := range rep.Users {
					seen[u.PublicKey]++
				}
				if rep.NextOffset == 0 {
					break
				}
				off = rep.NextOffset
			}
			if len(seen) != users {
				t.Errorf("the pages list %d users, want %d", len(seen), users)
			}
			for k, c := range seen {
				if c != 1 {
					t.Errorf("user %s listed %d times", k, c)
				}
			}
		})
	}
}
