package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/service"
)

// runDev starts an embedded nats-server from an init'ed directory (made on
// first run) and the service against it: the same service as serve, with
// the server in-process.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "provisioner-dev", "directory for the keys, configs and server data; kept across runs")
	port := fs.Int("port", 4222, "client port; when taken, a free one is used and said so")
	reset := fs.Bool("reset", false, "delete the directory first and start fresh")
	serverLogs := fs.Bool("server-logs", false, "show the embedded nats-server's log")
	if err := fs.Parse(args); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if *reset {
		if err := os.RemoveAll(abs); err != nil {
			return fmt.Errorf("dev: reset %s: %w", abs, err)
		}
	}
	if _, err := os.Stat(filepath.Join(abs, bootstrap.ConfigFile)); errors.Is(err, os.ErrNotExist) {
		res, err := bootstrap.Init(bootstrap.Options{Dir: abs, Port: *port})
		if err != nil {
			return err
		}
		printInit(stdout, res)
		fmt.Fprintln(stdout)
	} else if err != nil {
		return err
	} else {
		fmt.Fprintf(stdout, "Using the deployment in %s (--reset starts fresh)\n", abs)
	}

	p := *port
	if !natsembed.PortFree("127.0.0.1", p) {
		fmt.Fprintf(stdout, "Port %d is taken; using a free port instead.\n", p)
		p = -1
	}
	srv, err := natsembed.Start(filepath.Join(abs, bootstrap.ServerConfFile), natsembed.Options{Port: p, Logs: *serverLogs})
	if err != nil {
		return err
	}
	defer srv.Stop()

	cfg, err := loadConfig(filepath.Join(abs, bootstrap.ConfigFile), srv.URL(), "")
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg)
	svc, err := service.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	creds := filepath.Join(abs, bootstrap.AdminCredsFile)
	fmt.Fprintf(stdout, "\nnats-server  %s (data in %s)\n", srv.URL(), abs)
	fmt.Fprintf(stdout, "admin creds  %s\n", creds)
	fmt.Fprintf(stdout, "\nTry it:\n  %s\n", tryLine(srv.URL(), creds, cfg.SubjectPrefix))
	fmt.Fprintf(stdout, "  nats --server %s --creds %s micro info %s\n", srv.URL(), creds, cfg.ServiceName)
	fmt.Fprintln(stdout, "\nCtrl-C stops.")
	<-ctx.Done()
	log.Info("provisioner stopping")
	err = svc.Stop()
	return err
}
