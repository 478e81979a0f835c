package provision_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// manyServers answers a push for extra servers besides the real ones, as
// a deployment of many servers does: the push goes to the real servers
// through the real claims path.
type manyServers struct {
	provision.Resolver
	extra int
}

func (m *manyServers) Update(ctx context.Context, token string) (provision.PushResult, error) {
	res, err := m.Resolver.Update(ctx, token)
	for i := range m.extra {
		res = append(res, provision.ServerReply{
			Server:   fmt.Sprintf("nats-eu-west-1-node-%02d", i),
			ServerID: "N" + strings.Repeat(fmt.Sprintf("%02d", i), 27) + "X",
			Code:     200, Message: "jwt updated", Stored: true, Answered: true,
		})
	}
	return res, err
}

// TestJWTReplyFitsWithManyServers: the largest account JWT the service
// signs leaves 4096 bytes of a reply for the rest, and the reply lists one
// line per server's answer (about 140 bytes each): with 40 servers, an
// account near the largest was made and pushed, then answered 500 "its
// reply would be over max_payload". The reply fits, listing as many
// servers' answers as the room holds and counting the rest.
func TestJWTReplyFitsWithManyServers(t *testing.T) {
	t.Parallel()
	const (
		maxPayload = 16 << 10
		maxJWT     = maxPayload - 1024 - 4096 // what the service sets
		servers    = 40
	)
	env := provtest.Deployment(t, bootstrap.Options{})
	m := &manyServers{extra: servers}
	d := newDomain(t, env, func(r provision.Resolver) provision.Resolver { m.Resolver = r; return m },
		func(c *provision.Config) { c.MaxJWTSize = maxJWT })
	defer d.stop()
	ctx := context.Background()
	name := func(i int) string { return fmt.Sprintf("%s%03d", strings.Repeat("<", 125), i) }
	largest := 0
	for n := 500; ; n += 10 {
		tags := make([]string, n)
		for i := range tags {
			tags[i] = fmt.Sprintf("t%07d", i)
		}
		rep, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: name(n / 10), Tags: tags})
		if errors.Is(err, provision.ErrInvalid) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		largest = len(rep.Account.JWT)
		if data, _ := json.Marshal(rep); len(data) > maxPayload-1024 {
			t.Fatalf("account.create of %d tags (JWT %d bytes) with %d servers: reply %d bytes, over max_payload-1024 = %d", n, len(rep.Account.JWT), len(rep.Resolver), len(data), maxPayload-1024)
		}
		if len(rep.Resolver)+rep.ResolverOmitted < servers+1 {
			t.Fatalf("account.create: %d servers' answers listed, %d counted besides; want all %d", len(rep.Resolver), rep.ResolverOmitted, servers+1)
		}
	}
	if largest < maxJWT-500 {
		t.Fatalf("the largest account made is %d bytes; the test wants one near %d", largest, maxJWT)
	}
}
