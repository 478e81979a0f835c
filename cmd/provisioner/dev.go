package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/service"
)

// devOptions are the flags of dev that decide its deployment and server.
type devOptions struct {
	dir        string
	port       int
	reset      bool
	store      string
	storeSet   bool // --store was given, not defaulted
	portSet    bool // --port was given: a deployment made before runs on its own port without it
	serverLogs bool
}

// runDev starts an embedded nats-server from an init'ed directory (made on
// first run) and the service against it: the same service as serve, with
// the server in-process.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommand("dev", "run everything on this machine, no setup: an embedded nats-server with JetStream and the service, from a deployment made on the first run",
		"provisioner dev [flags]",
		"provisioner dev --reset")
	var o devOptions
	fs.StringVar(&o.dir, "dir", "provisioner-dev", "directory for the keys, configs and server data; kept across runs")
	fs.IntVar(&o.port, "port", 4222, "client port; when taken, a free one is used and said so; 0: any free port. The first run's is the deployment's (its config.json's), which later runs use without --port")
	fs.BoolVar(&o.reset, "reset", false, "delete the directory first and start fresh")
	fs.StringVar(&o.store, "store", bootstrap.StoreJetStream, "jetstream (the KV store in the embedded server's JetStream) or file (a directory); an existing directory keeps its kind")
	fs.BoolVar(&o.serverLogs, "server-logs", false, "show the embedded nats-server's log")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	if err := fs.refuseEmptyValues(stderr, "port"); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		o.storeSet = o.storeSet || f.Name == "store"
		o.portSet = o.portSet || f.Name == "port"
	})

	d, err := startDev(o, stdout)
	if err != nil {
		return err
	}
	defer d.Stop()
	log := newLogger(stderr, d.cfg)
	svc, err := service.Start(ctx, d.cfg, log)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// Stopped (Ctrl-C, SIGTERM) while it waited to start: a
			// clean stop, as serve's. A start refused for a real reason
			// as the stop came is still a failure.
			log.Info("provisioner stopped before it started", "error", err)
			return nil
		}
		return err
	}
	creds := filepath.Join(d.dir, bootstrap.AdminCredsFile)
	fmt.Fprintf(stdout, "\nnats-server  %s (data in %s)\n", d.srv.URL(), d.dir)
	fmt.Fprintf(stdout, "store        %s\n", d.cfg.StoreKind())
	fmt.Fprintf(stdout, "admin creds  %s\n", creds)
	fmt.Fprintf(stdout, "\nTry it:\n  %s\n", tryLine(d.srv.URL(), creds, d.cfg.SubjectPrefix))
	fmt.Fprintf(stdout, "  nats --server %s --creds %s --inbox-prefix %s micro info %s\n",
		shellQuote(d.srv.URL()), shellQuote(creds), bootstrap.AdminInboxPrefix, d.cfg.ServiceName)
	fmt.Fprintln(stdout, "\nCtrl-C stops.")
	// Not only Ctrl-C: a connection closed for good (creds expired or
	// revoked) ends dev too, as serve, instead of serving deaf.
	return svc.Serve(ctx)
}

// dev is a deployment of dev with its server running.
type dev struct {
	dir    string
	srv    *natsembed.Server
	cfg    *config.Config // nats_url is the running server's
	unlock func()
}

// Stop stops the server and releases the directory.
func (d *dev) Stop() {
	d.srv.Stop()
	d.unlock()
}

// devMadeFile marks a deployment dev made itself: only such a directory,
// or an empty one, may be reset. Not the lock file, which dev takes in any
// directory it runs in: a plain dev on a real init deployment uses it as
// it is, and must not make it resettable.
const devMadeFile = ".dev.made"

// checkResettable refuses a --reset of a directory that holds anything but
// is not a deployment dev made: --dir deploy (a real init deployment,
// identity keys and all) or --dir . would be wiped.
func checkResettable(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(ents) == 0) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dev: reset %s: %w", dir, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, devMadeFile)); err != nil {
		return fmt.Errorf("dev: --reset deletes everything in %s, which was not made by provisioner dev (it has no %s): it may be a real deployment or other files; remove it yourself, or choose another --dir", dir, devMadeFile)
	}
	return nil
}

// startDev makes the deployment in o.dir on first run (or after --reset)
// and starts its embedded server, with JetStream. A directory made before
// keeps its store kind; asking for the other one is an error.
func startDev(o devOptions, stdout io.Writer) (*dev, error) {
	abs, err := filepath.Abs(o.dir)
	if err != nil {
		return nil, err
	}
	// What init would refuse is refused before --reset deletes anything.
	initOpts := bootstrap.Options{Dir: abs, Port: o.port, Store: o.store}
	if err := initOpts.Check(); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	if o.reset {
		if err := checkResettable(abs); err != nil {
			return nil, err
		}
	}
	unlock, err := lockDev(abs)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			unlock()
		}
	}()
	if o.reset {
		// Everything but the lock, which is held, and the mark, which
		// stays: it sorts first, and a reset cut after it (kill -9, an
		// entry that would not go) left a half-deleted directory that no
		// later --reset would touch.
		ents, err := os.ReadDir(abs)
		if err != nil {
			return nil, fmt.Errorf("dev: reset %s: %w", abs, err)
		}
		for _, e := range ents {
			if e.Name() == devLockFile || e.Name() == devMadeFile {
				continue
			}
			if err := os.RemoveAll(filepath.Join(abs, e.Name())); err != nil {
				return nil, fmt.Errorf("dev: reset %s: %w", abs, err)
			}
		}
	}
	cfgPath := filepath.Join(abs, bootstrap.ConfigFile)
	made := false // made here, on the port settled for this run
	if _, err := os.Stat(cfgPath); errors.Is(err, os.ErrNotExist) {
		// Only a directory dev found empty (but for its lock) is dev's
		// to reset: one that held files of its own (--dir .) gets the
		// deployment beside them, unmarked, or a later --reset would
		// delete them too. Marked before init writes, so that a first
		// run cut inside init (kill -9) can be reset.
		ents, err := os.ReadDir(abs)
		if err != nil {
			return nil, fmt.Errorf("dev: %w", err)
		}
		others := slices.ContainsFunc(ents, func(e os.DirEntry) bool { return e.Name() != devLockFile && e.Name() != devMadeFile })
		if !others {
			if err := os.WriteFile(filepath.Join(abs, devMadeFile), []byte("made by provisioner dev: --reset may delete this directory's contents\n"), 0o600); err != nil {
				return nil, fmt.Errorf("dev: %w", err)
			}
		}
		// The port is settled before init writes it: a free one in place
		// of a taken one is then the port config.json and nats-server.conf
		// name, not only this run's, and a command given the config (store
		// reseal, operator finish, serve beside `nats-server -c`) reaches
		// this deployment's server, not whatever holds the port asked for.
		if initOpts.Port, err = devPort("127.0.0.1", o.port, stdout); err != nil {
			return nil, fmt.Errorf("dev: %w", err)
		}
		res, err := bootstrap.Init(initOpts)
		if err != nil {
			// A directory dev marked, holding files but no config.json,
			// is a first run cut inside init: Init's "exists; choose
			// another --dir or remove it" does not say that --reset, which
			// the mark is there for, is the way out.
			if _, serr := os.Lstat(filepath.Join(abs, devMadeFile)); serr == nil && others {
				return nil, fmt.Errorf("dev: %s holds part of a deployment that a first run of dev did not finish (it has no %s); --reset starts fresh: %w", abs, bootstrap.ConfigFile, err)
			}
			return nil, err
		}
		printInit(stdout, res)
		fmt.Fprintln(stdout)
		made = true
	} else if err != nil {
		return nil, err
	} else {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return nil, fmt.Errorf("dev: %w (--reset starts fresh)", err)
		}
		if o.storeSet && cfg.StoreKind() != o.store {
			return nil, fmt.Errorf("dev: %s holds a deployment with the %s store; run without --store to use it, or with --reset to start over with %s", abs, cfg.StoreKind(), o.store)
		}
		if err := checkServerConfHere(abs); err != nil {
			return nil, err
		}
		if err := checkServerNotRunning(cfg, cfgPath); err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "Using the %s deployment in %s (--reset starts fresh)\n", cfg.StoreKind(), abs)
	}

	// Taken or not on the host the deployment's server listens on: a
	// deployment made with `init --host ::1` listens on [::1], where a
	// port free on 127.0.0.1 may be taken. The deployment's own port,
	// which config.json names, unless --port asks another of one made
	// before.
	confFile := filepath.Join(abs, bootstrap.ServerConfFile)
	host, own := natsembed.Listen(confFile)
	if host == "" {
		host = "127.0.0.1"
	}
	asked := o.port
	if (made || !o.portSet) && own != 0 {
		asked = own
	}
	p, err := devPort(host, asked, stdout)
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	if own != 0 && p != own {
		fmt.Fprintf(stdout, "This run's server is not on the deployment's port %d: a command given %s connects to that port, not to this server.\n", own, cfgPath)
	}
	srv, err := natsembed.Start(confFile, natsembed.Options{Port: p, Logs: o.serverLogs})
	if err != nil {
		return nil, err
	}
	cfg, err := loadConfig(cfgPath, srv.URL(), "", "")
	if err != nil {
		srv.Stop()
		return nil, err
	}
	ok = true
	return &dev{dir: abs, srv: srv, cfg: cfg, unlock: unlock}, nil
}

// devPort returns the port dev's server is to listen on, on host: asked,
// or a free one when asked is 0 or taken (said so).
func devPort(host string, asked int, stdout io.Writer) (int, error) {
	if asked != 0 {
		if natsembed.PortFree(host, asked) {
			return asked, nil
		}
		fmt.Fprintf(stdout, "Port %d is taken; using a free port instead.\n", asked)
	}
	return natsembed.FreePort(host)
}

// checkServerNotRunning refuses a deployment whose own nats-server runs
// (README's `nats-server -c deploy/nats-server.conf`): dev would find its
// port taken, take another and start a second server on the same
// JetStream store and resolver directories, which nothing locks (dev's
// lock keeps out only another dev). A server at the deployment's address
// that lets its provisioner user in trusts its operator: it is this
// deployment's. One that does not answer, or refuses the creds, is not;
// nor is one that asks for no auth at all (another project's plain
// nats-server on the port), which lets any creds in: dev takes another
// port beside it, as it did before this check.
func checkServerNotRunning(cfg *config.Config, cfgPath string) error {
	creds, err := credsOption("dev: nats_creds", cfg.NATSCreds)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(cfg.NATSURL, creds, nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix),
		nats.Name("provisioner dev check"), nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return nil
	}
	authenticated := nc.AuthRequired()
	nc.Close()
	if !authenticated {
		return nil
	}
	return fmt.Errorf("dev: a nats-server of this deployment already runs at %s (it takes %s): dev would start another beside it, on the JetStream and resolver files in %s that nats-server.conf names; stop it first, or leave it running and use `provisioner serve --config %s`", config.RedactURL(cfg.NATSURL), cfg.NATSCreds, filepath.Dir(cfgPath), cfgPath)
}

// checkServerConfHere refuses a deployment whose nats-server.conf was
// written in another directory. The conf names the operator JWT, the
// resolver's and JetStream's directories by absolute paths (nats-server
// reads relative ones from its working directory), those of the directory
// init wrote it in: in a copy, the server ran on the original's resolver
// and JetStream data beside the copy's own store; moved, it failed to read
// the operator JWT, naming neither the move nor the way out.
func checkServerConfHere(dir string) error {
	path := filepath.Join(dir, bootstrap.ServerConfFile)
	m, err := conf.ParseFile(path)
	if err != nil {
		return nil // the server's start names what is wrong with it
	}
	op, _ := m["operator"].(string)
	if !filepath.IsAbs(op) {
		return nil
	}
	was := filepath.Dir(op)
	here, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if there, err := os.Stat(was); err == nil && os.SameFile(here, there) {
		return nil
	}
	return fmt.Errorf("dev: %s was written for %s: its operator JWT, resolver and JetStream directories are there, not here (the deployment was moved or copied); run dev on the directory it was made in, or --reset to start fresh here", path, was)
}
