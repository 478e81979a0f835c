package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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
	// of them is set.
	Embedded *natsembed.Server
	External *ServerProcess
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
	floors   *floors
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
	e := &Env{Dir: res.Dir, Store: o.Store}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()
	if o.ServerBinary != "" {
		if e.External, err = StartServerProcess(ctx, o.ServerBinary, res.ServerConf, filepath.Join(res.Dir, "nats-server.log")); err != nil {
			return nil, err
		}
		e.URL = e.External.URL
	} else {
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
	if e.External != nil {
		return fmt.Sprintf("nats-server%s, separate process (%s, pid %d)", version, e.External.Binary, e.External.Pid())
	}
	return fmt.Sprintf("nats-server%s, embedded in this process", version)
}

// cpu returns the CPU time this process and the separate server process
// have used so far (0 where unknown).
func (e *Env) cpu() (self, server time.Duration) {
	self = selfCPU()
	if e.External != nil {
		server = processCPU(e.External.Pid())
	}
	return self, server
}
