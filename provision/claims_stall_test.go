package provision_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
)

// claimsHold is a relay on a route, in front of the node the other one
// routes to. While held, it keeps back the claims requests (a push, a
// DELETE, a LIST, a LOOKUP, a resolver sync's PACK) on their way to the
// soliciting node and passes everything else, its server pings among
// them: a full resolver whose claims requests wait (nats-server handles
// them on a queue of their own, apart from pings and STATSZ; a slow
// resolver disk stalls them) while it answers pings at once.
type claimsHold struct {
	mu    sync.Mutex
	held  bool
	conns []*holdConn
}

type holdConn struct {
	mu     sync.Mutex
	out    net.Conn
	queued [][]byte
}

func (h *claimsHold) hold(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = on
	if on {
		return
	}
	for _, c := range h.conns {
		c.mu.Lock()
		for _, f := range c.queued {
			c.out.Write(f)
		}
		c.queued = nil
		c.mu.Unlock()
	}
}

func (h *claimsHold) isHeld() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held
}

// relayClaims listens on a local port and forwards each connection to
// target; frames from target are read one at a time.
func relayClaims(t *testing.T, target string) (string, *claimsHold) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &claimsHold{}
	var links []net.Conn
	t.Cleanup(func() {
		ln.Close()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range links {
			c.Close()
		}
	})
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			c := &holdConn{out: in}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			links = append(links, in, out)
			h.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() {
				defer in.Close()
				r := bufio.NewReaderSize(out, 64<<10)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					frame := []byte(line)
					if strings.HasPrefix(line, "RMSG ") || strings.HasPrefix(line, "HMSG ") {
						f := strings.Fields(line)
						n, err := strconv.Atoi(f[len(f)-1])
						if err != nil {
							return
						}
						body := make([]byte, n+2)
						if _, err := io.ReadFull(r, body); err != nil {
							return
						}
						frame = append(frame, body...)
					}
					claims := strings.Contains(line, " $SYS.REQ.CLAIMS.") || strings.Contains(line, ".CLAIMS.LOOKUP ")
					h.mu.Lock()
					c.mu.Lock()
					if claims && h.held {
						c.queued = append(c.queued, frame)
					} else {
						_, err = in.Write(frame)
					}
					c.mu.Unlock()
					h.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), h
}

// TestTombstoneKeptBesideAFullResolverSlowToAnswerClaims: node-b, a full
// resolver, comes back from an old disk that holds a deleted account live,
// and its claims requests wait (its resolver disk stalled) while it
// answers pings. Having missed a claims request and answered a ping, it
// is taken for a server with no resolver, whose missing LIST keeps no
// tombstone: the pass dropped the tombstone without node-b's LIST, while
// node-b held the account live; once node-b answers again, its resolver
// sync spreads the account back to every server, an orphan that no pass
// deletes.
func TestTombstoneKeptBesideAFullResolverSlowToAnswerClaims(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, res, 1)
	relay, h := relayClaims(t, nodes[0].srv.ClusterAddr().String())
	conf := res.Server
	conf.ServerName = "node-b"
	conf.Listen = "127.0.0.1:-1"
	jwtDir := filepath.Join(t.TempDir(), "jwt")
	conf.ResolverDir = jwtDir
	conf.JetStreamDir = ""
	conf.Cluster = &bootstrap.ClusterConf{Name: "test-cluster", Listen: "127.0.0.1:-1", Routes: []string{"nats-route://" + relay}}
	b := &clusterNode{name: "node-b", conf: filepath.Join(t.TempDir(), "node-b.conf"), t: t}
	if err := os.WriteFile(b.conf, conf.Render(), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	waitRoutes(t, b)
	nodes = append(nodes, b)
	d := newClusterDomain(t, res, nodes, time.Hour, nil, func(cfg *provision.Config) { cfg.TombstoneRetention = time.Second })
	ctx := context.Background()

	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	live, err := os.ReadFile(filepath.Join(jwtDir, pub+".jwt"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != string(provision.PhaseDeleted) {
		t.Fatalf("delete: phase %s, want deleted", rep.Phase)
	}
	// node-b comes back from an old disk, its claims requests stalled.
	b.srv.Stop()
	if err := os.WriteFile(filepath.Join(jwtDir, pub+".jwt"), live, 0o600); err != nil {
		t.Fatal(err)
	}
	h.hold(true)
	t.Cleanup(func() { h.hold(false) })
	b.start()
	waitRoutes(t, b)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		flagged := false
		for _, srv := range d.rc.Servers() {
			flagged = flagged || srv.Name == "node-b" && srv.Up && srv.ID == b.srv.ID() && srv.NoResolver
		}
		if flagged {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node-b, its claims requests held, not taken for a server with no resolver")
		}
		if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond) // past the retention
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if !h.isHeld() {
		t.Fatal("released early")
	}
	if _, err := os.Stat(filepath.Join(jwtDir, pub+".jwt")); err != nil {
		t.Fatalf("node-b no longer holds the account: %v", err)
	}
	if _, err := d.store.Account(ctx, pub); errors.Is(err, provision.ErrNotFound) {
		t.Errorf("the tombstone was dropped by a pass that had no LIST from node-b, a full resolver slow to answer claims requests that holds the account live")
	} else if err != nil {
		t.Fatal(fmt.Errorf("read the tombstone: %w", err))
	}
}
