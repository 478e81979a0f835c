package client_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/testenv"
)

// TestFirstRequestsKeepTheirOwnDeadlines: a new client's first request
// checks the connection's inbox with a flush, which waits for a stalled
// server until that request's context ends. Another request of the same
// client, sent meanwhile with a shorter deadline, waited behind that
// check for as long, past its own deadline ("a context's own deadline
// always wins"). It ends at its own deadline, saying nothing was sent.
func TestFirstRequestsKeepTheirOwnDeadlines(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	server := env.RealServer(t)
	env.Start(t)
	c := client.New(env.Admin(t))
	testenv.Pause(t, server)
	defer server.Signal(syscall.SIGCONT)

	long, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := c.ListAccounts(long, api.ListRequest{})
		first <- err
	}()
	time.Sleep(300 * time.Millisecond) // the first request is in its inbox check

	short, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	began := time.Now()
	_, err := c.ListAccounts(short, api.ListRequest{})
	took := time.Since(began)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not sent") {
		t.Errorf("the second request: %v, want context.DeadlineExceeded, saying it was not sent", err)
	}
	if took > 2*time.Second {
		t.Errorf("the second request, with a deadline of 500ms, returned after %s: it waited for the first one's inbox check", took.Round(time.Millisecond))
	}
	server.Signal(syscall.SIGCONT)
	<-first
}
