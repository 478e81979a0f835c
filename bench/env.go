package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/service"
)

// Env is the deployment a bench runs against.
type Env struct {
	Dir   string
	Store string
	URL   string
	// Embedded is the in-process server, External the separate one; one
	// of them is set. Peers are the other nodes of a cluster.
	Embedded *natsembed.Server
	External *ServerProcess
	Peers    []*ServerProcess
	Service  *service.Service
	// RequestTimeout is the service's request_timeout.
	RequestTimeout time.Duration
	// Admin sends provisioning requests (admin.creds); Sys is the floors'
	// own system connection (provisioner.creds), not the service's.
	Admin *nats.Conn
	Sys   *nats.Conn
	// Operator is the floors' own copy of the operator signing key.
	Operator *provision.Operator
	Prefix   string
	// Storage names the memory-backed filesystem (tmpfs, ramfs) Dir is
	// on, "" when it is on another: see Report.Storage.
	Storage string
	floors  *floors
	// pusher sends the floors' claims API requests on Sys and waits for
	// every server's answer.
	pusher *pusher
}

// Start writes a deployment for o.Store, starts its nats-server (embedded,
// or o.ServerBinary as a separate process) and the service, and registers
// the floors' endpoint on the service's connection. On error, everything
// started is stopped again, and a temp dir it made is removed.
func Start(ctx context.Context, o Options) (_ *Env, err error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "provisioner-bench-"); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				os.RemoveAll(dir)
			}
		}()
	}
	// Every account the run makes stays on the server until the deletes
	// at the end: the service's creates at two concurrencies (2N), a
	// round of the floors' creates, the fill and the scale measurements
	// (under N more); the rest is room.
	limit := o.Accounts + 4*o.N + 4000
	res, err := bootstrap.Init(bootstrap.Options{Dir: dir, ResolverLimit: limit, Store: o.Store})
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: res.Dir, Store: o.Store, Storage: volatileStorage(res.Dir)}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()
	switch {
	case o.Cluster:
		nodes, err := startCluster(ctx, o.ServerBinary, res)
		if err != nil {
			return nil, err
		}
		e.External, e.Peers = nodes[0], nodes[1:]
		// Every connection, the service's and the floors', enters
		// through the first node. Given the three URLs, each picked one
		// at random: the floors' pushes could enter through one node and
		// the service's through another, and the admin's requests reach
		// the service over a route, paths that differ from row to floor.
		// The other nodes are learnt from the first, for reconnects.
		e.URL = nodes[0].URL
	case o.ServerBinary != "":
		if e.External, err = StartServerProcess(ctx, o.ServerBinary, res.ServerConf, filepath.Join(res.Dir, "nats-server.log")); err != nil {
			return nil, err
		}
		e.URL = e.External.URL
	default:
		if e.Embedded, err = natsembed.Start(res.ServerConf, natsembed.Options{Port: -1}); err != nil {
			return nil, err
		}
		e.URL = e.Embedded.URL()
	}
	cfg, err := config.Load(res.Config)
	if err != nil {
		return nil, err
	}
	cfg.NATSURL = e.URL
	if o.Cluster {
		cfg.KVReplicas = clusterSize
	}
	e.Prefix = cfg.SubjectPrefix
	e.RequestTimeout = time.Duration(cfg.RequestTimeout)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	if e.Service, err = service.Start(ctx, cfg, log); err != nil {
		return nil, err
	}
	if e.Operator, err = provision.LoadOperator(cfg.OperatorJWT, cfg.OperatorSigningKey); err != nil {
		return nil, err
	}
	if e.Admin, err = nats.Connect(e.URL, nats.UserCredentials(res.AdminCreds), nats.CustomInboxPrefix(bootstrap.AdminInboxPrefix), nats.Name("bench-admin")); err != nil {
		return nil, err
	}
	if e.Sys, err = nats.Connect(e.URL, nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix), nats.Name("bench-floor")); err != nil {
		return nil, err
	}
	if e.pusher, err = newPusher(e.Sys, 1+len(e.Peers)); err != nil {
		return nil, err
	}
	if e.floors, err = startFloors(e.Service.NC, e.Prefix); err != nil {
		return nil, err
	}
	return e, nil
}

// Stop stops everything Start started, the separate server last. The
// directory stays.
func (e *Env) Stop() error {
	if e.floors != nil {
		e.floors.stop()
	}
	e.pusher.stop()
	for _, nc := range []*nats.Conn{e.Admin, e.Sys} {
		if nc != nil {
			nc.Close()
		}
	}
	var errs []error
	if e.Service != nil {
		errs = append(errs, e.Service.Stop())
	}
	if e.Operator != nil {
		e.Operator.Signer.Wipe()
	}
	if e.Embedded != nil {
		e.Embedded.Stop()
	}
	for _, p := range e.Peers {
		errs = append(errs, p.Stop())
	}
	if e.External != nil {
		errs = append(errs, e.External.Stop())
	}
	return errors.Join(errs...)
}

// ServerDescription says which nats-server the bench runs against.
func (e *Env) ServerDescription() string {
	version := ""
	if e.Admin != nil {
		version = " v" + e.Admin.ConnectedServerVersion()
	}
	if len(e.Peers) > 0 {
		pids := []string{strconv.Itoa(e.External.Pid())}
		for _, p := range e.Peers {
			pids = append(pids, strconv.Itoa(p.Pid()))
		}
		return fmt.Sprintf("nats-server%s, a cluster of %d separate processes (%s, pids %s), R%d bucket", version, len(pids), e.External.Binary, strings.Join(pids, " "), clusterSize)
	}
	if e.External != nil {
		return fmt.Sprintf("nats-server%s, separate process (%s, pid %d)", version, e.External.Binary, e.External.Pid())
	}
	return fmt.Sprintf("nats-server%s, embedded in this process", version)
}

// cpu returns the CPU time this process and the separate server processes
// have used so far (0 where unknown).
func (e *Env) cpu() (self, server time.Duration) {
	self = selfCPU()
	if e.External != nil {
		server = processCPU(e.External.Pid())
	}
	for _, p := range e.Peers {
		server += processCPU(p.Pid())
	}
	return self, server
}

// serverRSS returns the resident memory of the separate server processes
// together (0 with the embedded server): a cluster's three, not its first
// node alone.
func (e *Env) serverRSS() uint64 {
	var sum uint64
	if e.External != nil {
		sum = rss(strconv.Itoa(e.External.Pid()))
	}
	for _, p := range e.Peers {
		sum += rss(strconv.Itoa(p.Pid()))
	}
	return sum
}

// clusterSize is the number of nodes of the bench's cluster.
const clusterSize = 3

// replicas is the replica count of the JetStream store's bucket.
func (e *Env) replicas() int {
	if len(e.Peers) > 0 {
		return clusterSize
	}
	return 1
}

// startCluster starts a cluster of nats-server processes on 127.0.0.1,
// each with the deployment's server config (its accounts, resolver and
// JetStream) and a cluster block, as init's container cluster configs
// are made, with a resolver and JetStream directory of its own. It waits
// until each accepts clients; the service waits for JetStream itself.
func startCluster(ctx context.Context, binary string, res *bootstrap.Result) (_ []*ServerProcess, err error) {
	var nodes []*ServerProcess
	defer func() {
		if err != nil {
			for _, n := range nodes {
				n.Stop()
			}
		}
	}()
	ports := make([]int, clusterSize)
	routes := make([]string, clusterSize)
	for i := range ports {
		if ports[i], err = freePort(ports[:i]...); err != nil {
			return nil, err
		}
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[i])
	}
	for i := range clusterSize {
		dir := filepath.Join(res.Dir, fmt.Sprintf("node%d", i+1))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		c := res.Server
		c.ServerName = fmt.Sprintf("bench-n%d", i+1)
		c.ResolverDir = filepath.Join(dir, bootstrap.ResolverDir)
		c.JetStreamDir = filepath.Join(dir, bootstrap.JetStreamDir)
		c.Cluster = &bootstrap.ClusterConf{Name: "bench", Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes}
		conf := filepath.Join(dir, "nats-server.conf")
		if err := os.WriteFile(conf, c.Render(), 0o600); err != nil {
			return nil, err
		}
		n, err := StartServerProcess(ctx, binary, conf, filepath.Join(dir, "nats-server.log"), ports...)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}
