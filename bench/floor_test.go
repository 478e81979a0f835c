package bench

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// fakeServers answers claims updates on nc as n servers would: server i
// after delays[i], with code 200 unless it is refuse.
func fakeServers(t *testing.T, nc *nats.Conn, delays []time.Duration, refuse int) {
	t.Helper()
	for i, d := range delays {
		code := 200
		if i == refuse {
			code = 500
		}
		_, err := nc.Subscribe(subjectClaimsUpdate, func(m *nats.Msg) {
			go func() {
				time.Sleep(d)
				m.Respond(fmt.Appendf(nil, `{"server":{"name":"n%d","id":"ID%d"},"data":{"code":%d,"message":"jwt updated"}}`, i, i, code))
			}()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func plainServer(t *testing.T) *nats.Conn {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// The floor's push waits for every server of a cluster, as the service's
// resolver client does, not for the first answer.
func TestPushWaitsForEveryServer(t *testing.T) {
	nc := plainServer(t)
	fakeServers(t, nc, []time.Duration{0, 0, 300 * time.Millisecond}, -1)
	p, err := newPusher(nc, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	start := time.Now()
	if err := p.push(subjectClaimsUpdate, []byte("x"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("push returned after %s, before the slowest of three servers answered (300ms)", took)
	}
}

func TestPushFailsOnOneRefusal(t *testing.T) {
	nc := plainServer(t)
	fakeServers(t, nc, []time.Duration{0, 0, 100 * time.Millisecond}, 2)
	p, err := newPusher(nc, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	if err := p.push(subjectClaimsUpdate, []byte("x"), 5*time.Second); !errors.Is(err, errRefused) {
		t.Fatalf("push with one server refusing: %v, want errRefused", err)
	}
}

func TestPushTimesOutWhenAServerIsMissing(t *testing.T) {
	nc := plainServer(t)
	fakeServers(t, nc, []time.Duration{0, 0}, -1)
	p, err := newPusher(nc, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	if err := p.push(subjectClaimsUpdate, []byte("x"), 300*time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("push with two of three servers answering: %v, want a timeout", err)
	}
}
