// Command provisioner is a NATS-native provisioning responder: it answers
// requests on NATS subjects to create, update and delete accounts and to
// issue and revoke users, signs their JWTs and pushes them to the servers'
// full account resolver.
//
//	provisioner dev                          everything on this machine, no setup
//	provisioner init --dir DIR               a new deployment's keys and configs
//	provisioner serve --config config.json   the service
//	provisioner bench                        throughput against the floor
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first SIGINT or SIGTERM ends ctx, and a stop begins (up to 30 s
	// during an outage). A second one means now: the handler is removed
	// once ctx ends, so that it ends the process at once, as a kill would,
	// instead of being swallowed while the stop goes on waiting.
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		// -h asked for help and got it: that is a success.
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "provisioner:", err)
		os.Exit(exitCode(err))
	}
}

const usage = `provisioner: provisions NATS accounts and users over NATS requests.

Usage:
  provisioner dev   [--dir DIR] [--port N] [--store jetstream|file] [--reset]   run a local nats-server and the service, no setup
  provisioner init  --dir DIR [--store jetstream|file] [--host H] [--port N]    write a new deployment: keys, nats-server.conf, config.json
  provisioner serve --config config.json               run the service against a deployment
  provisioner bench [-n N] [-c C] [--store file|jetstream|both] [--external] [--accounts N]   measure throughput against the floor
  provisioner account create|list|get|update|delete   manage accounts through the service
  provisioner user create|list|revoke                 issue (--role R: a role's scoped key), list and revoke users
  provisioner store check|salvage --dir DIR            check a file store directory, or copy what is intact
  provisioner store migrate|reseal --config FILE       copy a file store into the KV bucket; seal the bucket anew
  provisioner operator add-signing-key|finish|remove-signing-key   rotate the operator signing key
  provisioner health --config FILE                     ask a running instance's health endpoint (health_listen)
  provisioner version

Run "provisioner COMMAND -h" for a command's flags.
`

// run is the whole program; main only supplies the process's context,
// arguments and output.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// A seed pasted where a path or a key goes would be echoed by the
	// errors that follow (an unknown command, the flag package's invalid
	// value, a file not found): refused first, without it.
	for i, a := range args {
		if api.LooksLikeSeed(a) {
			return fmt.Errorf("argument %d holds a seed; the CLI takes keys from files (a path) and public keys, never a seed, so nothing was done", i+1)
		}
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("a command is required")
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "init":
		return runInit(ctx, args[1:], stdout, stderr)
	case "dev":
		return runDev(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "account":
		return runAccount(ctx, args[1:], stdout, stderr)
	case "user":
		return runUser(ctx, args[1:], stdout, stderr)
	case "store":
		return runStore(ctx, args[1:], stdout, stderr)
	case "operator":
		return runOperator(ctx, args[1:], stdout, stderr)
	case "health":
		return runHealth(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "provisioner", service.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommand("serve", "run the provisioning service against a deployment (SIGINT/SIGTERM drain it and exit 0)",
		"provisioner serve [--config FILE] [flags]",
		"provisioner serve --config deploy/config.json")
	path := fs.String("config", "config.json", "the JSON config `FILE` (provisioner init writes one)")
	url := fs.String("nats-url", "", "override the config's nats_url (docker-compose uses it)")
	store := fs.String("store-dir", "", "override the config's store_dir")
	health := fs.String("health-listen", "", "override the config's health_listen, host:port of the HTTP health endpoint (docker-compose uses it)")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	// A flag given empty (an unset shell variable, or --health-listen ""
	// meant to turn the endpoint off) was taken as left out: the config's
	// value was used without a word.
	if err := fs.refuseEmptyValues(stderr); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, *url, *store, *health)
	if err != nil {
		return err
	}
	fault, err := service.ParseFault(os.Getenv("PROVISIONER_FAULT"))
	if err != nil {
		return err
	}
	var opts []service.Option
	if fault != nil {
		opts = append(opts, service.WithFault(fault))
	}
	return service.Run(ctx, cfg, newLogger(stderr, cfg), opts...)
}

// loadConfig loads the config file and applies the command-line overrides.
func loadConfig(path, url, store, health string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if url != "" {
		cfg.NATSURL = url
	}
	if store != "" {
		// --store-dir moves a file store (the image's /store volume). On
		// a config of the KV store it would switch this instance to a new,
		// empty file store serving in the KV instances' queue group.
		if cfg.StoreKind() == config.StoreJetStream && strings.TrimSpace(store) != "" {
			return nil, fmt.Errorf("config %s is of the JetStream KV store (kv_bucket %q): --store-dir would start this instance on an empty file store instead, beside the instances on the bucket; leave it out, or use a config of a file store (`provisioner init --store file`)", path, cfg.KVBucket)
		}
		cfg.StoreDir = store
	}
	if health != "" {
		cfg.HealthListen = health
	}
	// The overrides come after Load's Validate: check them as it checks
	// the file, so that a blank --store-dir is not a directory of spaces.
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s with --nats-url/--store-dir/--health-listen: %w", path, err)
	}
	return cfg, nil
}

func newLogger(w io.Writer, cfg *config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
