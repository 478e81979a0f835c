package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
)

// TestSelfServiceWithAServiceOlderThanTheDeadline: a service older than
// api.DeadlineHeader refuses a self-service request with any header of
// the caller's, before doing anything, with a 403. A tenant that took this
// client first would be locked out until the operator upgraded; the client
// sends such a request again without the header. Here a stand-in answers
// as the older service did, on a plain server.
func TestSelfServiceWithAServiceOlderThanTheDeadline(t *testing.T) {
	t.Parallel()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var (
		mu      sync.Mutex
		headers []int
	)
	sub, err := nc.Subscribe(api.Subject(api.DefaultPrefix, api.SubjectSelfUserList), func(m *nats.Msg) {
		mu.Lock()
		headers = append(headers, len(m.Header))
		mu.Unlock()
		out := nats.NewMsg(m.Reply)
		if len(m.Header) > 0 {
			out.Header.Set(micro.ErrorCodeHeader, "403")
			out.Header.Set(micro.ErrorHeader, "forbidden: a self-service request carries no headers of its own (the server adds the one the service reads)")
			out.Data = []byte(`{"error":{"code":403,"description":"forbidden"}}`)
		} else {
			out.Data = []byte(`{"users":[{"name":"d1","public_key":"UD1"}]}`)
		}
		m.RespondMsg(out)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, err := client.New(nc).SelfListUsers(ctx, api.SelfListUsersRequest{})
	if err != nil {
		t.Fatalf("self.user.list from a service older than the deadline header: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(rep.Users) != 1 || rep.Users[0].Name != "d1" || len(headers) != 2 || headers[0] != 1 || headers[1] != 0 {
		t.Errorf("users %+v, headers per request %v: want d1, sent with the deadline, then again without", rep.Users, headers)
	}
}

// TestFarDeadlineIsNoBadRequest: a context whose deadline lies past the
// year 9999 (a caller's "never") was sent as a five-digit year, which no
// RFC 3339 time has: the service answered 400 "the Provisioner-Deadline
// header is not an RFC 3339 time" to a request nothing was wrong with.
// Such a deadline fences nothing and is not sent.
func TestFarDeadlineIsNoBadRequest(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.Start(t)
	c := client.New(env.Admin(t))
	ctx, cancel := context.WithDeadline(context.Background(), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))
	defer cancel()
	if _, err := c.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatalf("a create whose context ends in the year 10000: %v", err)
	}
}
