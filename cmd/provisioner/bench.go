package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"

	"github.com/natsprov/provisioner/bench"
)

// runBench runs `provisioner bench`: for each store asked for, a new
// deployment, its server (embedded, or the nats-server binary as a
// separate process with --external), the service, and the measurements.
// With --store both, the reports follow each other (with --json, one JSON
// object each).
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommand("bench", "measure the service against the floor (the same work without it) in the same run, on the file or JetStream store, embedded or with the real nats-server binary",
		"provisioner bench [flags]",
		"provisioner bench -n 2000 -c 8 --store both --external")
	var o bench.Options
	fs.IntVar(&o.N, "n", bench.DefaultN, "operations per measurement")
	fs.IntVar(&o.C, "c", bench.DefaultC, "concurrent requesters")
	fs.IntVar(&o.CHigh, "c-high", bench.DefaultCHigh, "second concurrency for account.create and revokes on one account")
	fs.IntVar(&o.Rounds, "rounds", bench.DefaultRounds, "interleaved rounds each measurement is split into")
	fs.IntVar(&o.Versions, "versions", bench.DefaultVersions, "versions of one account per round of a one-account measurement (about one second each)")
	fs.IntVar(&o.Revocations, "revocations", bench.DefaultRevocations, "revocations in the account of the second revoke+update measurement")
	fs.IntVar(&o.Accounts, "accounts", 0, "scale mode: also measure costs at 1,000 and at this many accounts, and a reconcile pass")
	fs.StringVar(&o.Dir, "dir", "", "directory for the deployment (default: a temp dir, removed after); with --store both, one subdirectory per store")
	store := fs.String("store", bench.StoreFile, "the service's store: file, jetstream or both")
	external := fs.Bool("external", false, "run the nats-server binary as a separate process (found on PATH or in $(go env GOPATH)/bin)")
	serverBinary := fs.String("server-binary", "", "the nats-server binary to run as a separate process (implies --external)")
	cluster := fs.Bool("cluster", false, "run the JetStream store against a cluster of three nats-server processes with an R3 bucket, as init's cluster configs do (implies --external; the file store, one instance, keeps one server)")
	logLevel := fs.String("log-level", "error", "the service's log level on stderr: debug, info, warn or error")
	asJSON := fs.Bool("json", false, "print each report as JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (service, floors, and the server when embedded) to this file")
	strict := fs.Bool("strict", false, "exit non-zero when a target is missed")
	only := fs.String("only", "", "measure only the operations whose names match this regular expression (to profile them)")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	// bench.Options takes a zero for "the default": -n 0 or --rounds 0
	// ran the benchmark with the defaults without a word. The flags whose
	// default is the zero (--accounts 0: no scale mode; --dir "": a temp
	// dir) mean what they say.
	if err := fs.refuseEmptyValues(stderr, "accounts", "dir", "server-binary", "cpuprofile", "only"); err != nil {
		return err
	}
	var stores []string
	switch *store {
	case bench.StoreFile, bench.StoreJetStream:
		stores = []string{*store}
	case "both":
		stores = []string{bench.StoreFile, bench.StoreJetStream}
	default:
		return fmt.Errorf("bench: --store %q: want file, jetstream or both", *store)
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return fmt.Errorf("bench: --only: %w", err)
		}
		o.Only = re
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("bench: --log-level %q: %w", *logLevel, err)
	}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	o.ServerBinary = *serverBinary
	if (*external || *cluster) && o.ServerBinary == "" {
		bin, err := bench.FindServerBinary()
		if err != nil {
			return err
		}
		o.ServerBinary = bin
	}
	var runs []bench.Options
	for _, s := range stores {
		so := o
		so.Store = s
		so.Cluster = *cluster && s == bench.StoreJetStream
		if o.Dir != "" && len(stores) > 1 {
			so.Dir = filepath.Join(o.Dir, s)
		}
		// Refused before the profile is made: os.Create empties the
		// file a --cpuprofile names (an earlier run's profile).
		if err := so.Check(); err != nil {
			return err
		}
		runs = append(runs, so)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	failed := false
	for _, so := range runs {
		rep, err := benchOne(ctx, so, *asJSON, stdout, stderr)
		if err != nil {
			return err
		}
		failed = failed || rep.Failed()
	}
	if *strict && failed {
		return errors.New("bench: a target was missed")
	}
	return nil
}

// benchOne measures one store and prints its report.
func benchOne(ctx context.Context, o bench.Options, asJSON bool, stdout, stderr io.Writer) (*bench.Report, error) {
	keep := o.Dir != ""
	env, err := bench.Start(ctx, o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(stderr, "bench: stop: %v\n", err)
		}
		if !keep {
			os.RemoveAll(env.Dir)
		}
	}()
	if !asJSON {
		fmt.Fprintf(stderr, "bench: store %s, n=%d c=%d c-high=%d rounds=%d accounts=%d, %s at %s\n",
			o.Store, o.N, o.C, o.CHigh, o.Rounds, o.Accounts, env.ServerDescription(), env.URL)
	}
	o.Progress = func(msg string) { fmt.Fprintf(stderr, "bench: %s\n", msg) }
	rep, err := bench.Run(ctx, env, o)
	if rep == nil {
		return nil, err
	}
	// A scale mode that fails comes back with the report of the rows
	// measured before it: minutes of results, printed before the error.
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return nil, err
		}
	} else {
		rep.Print(stdout)
		fmt.Fprintln(stdout)
	}
	return rep, err
}
