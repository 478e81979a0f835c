package service_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestChangeEventGoesOutBeforeItsReply: README promises that a kill -9
// can lose the audit records of the last changes, their system-account
// events having been published. The event and the reply go out on the
// same connection, which the server delivers in order: an admin that
// gets both on one connection must see each change's event before its
// reply. Handed to a sender goroutine without waiting, the event went out
// after the reply every time, and a kill -9 once the caller had its reply
// lost it too.
func TestChangeEventGoesOutBeforeItsReply(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	defer svc.Stop()
	admin := env.Admin(t)
	// One channel for both subscriptions: nats.go's read loop puts each
	// message in it as it comes off the socket, in the server's order.
	ch := make(chan *nats.Msg, 1000)
	if _, err := admin.ChanSubscribe("prov.events.>", ch); err != nil {
		t.Fatal(err)
	}
	inbox := admin.NewInbox()
	if _, err := admin.ChanSubscribe(inbox+".*", ch); err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	const n = 50
	late := 0
	for i := range n {
		reply := fmt.Sprintf("%s.%d", inbox, i)
		if err := admin.PublishRequest("prov.account.create", reply, fmt.Appendf(nil, `{"name":"acme%d"}`, i)); err != nil {
			t.Fatal(err)
		}
		event := false
		for replied := false; !replied; {
			select {
			case m := <-ch:
				switch {
				case strings.HasPrefix(m.Subject, "prov.events."):
					event = true
				case m.Subject == reply:
					if m.Header.Get("Nats-Service-Error-Code") != "" {
						t.Fatalf("create %d: %s %s", i, m.Header.Get("Nats-Service-Error-Code"), m.Header.Get("Nats-Service-Error"))
					}
					replied = true
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("create %d: no reply", i)
			}
		}
		if !event {
			late++
			select {
			case <-ch: // its event, after the reply
			case <-time.After(5 * time.Second):
				t.Fatalf("create %d: no event", i)
			}
		}
	}
	if late > 0 {
		t.Fatalf("%d of %d creates were answered before their event was sent: a kill -9 at the reply loses the event too", late, n)
	}
}
