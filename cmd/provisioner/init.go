package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
)

func runInit(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommand("init", "write a new deployment: operator, keys, creds, nats-server.conf and the provisioner's config.json; never overwrites anything",
		"provisioner init --dir DIR [flags]",
		"provisioner init --dir deploy && nats-server -c deploy/nats-server.conf")
	var o bootstrap.Options
	fs.StringVar(&o.Dir, "dir", "", "directory to write the deployment into (required; nothing in it is overwritten)")
	fs.StringVar(&o.Store, "store", bootstrap.StoreJetStream, "where the provisioner keeps its state: jetstream (a KV bucket, any number of instances) or file (a directory, one instance)")
	fs.StringVar(&o.KVBucket, "kv-bucket", config.DefaultKVBucket, "the KV bucket the service user may use (jetstream)")
	fs.StringVar(&o.Host, "host", "127.0.0.1", "address nats-server listens on, and the provisioner connects to")
	fs.IntVar(&o.Port, "port", 4222, "client port of nats-server")
	fs.StringVar(&o.OperatorName, "operator-name", "provisioner", "name of the new operator")
	fs.StringVar(&o.SubjectPrefix, "prefix", config.DefaultSubjectPrefix, "subject prefix of the provisioning requests")
	fs.IntVar(&o.ResolverLimit, "resolver-limit", 10000, "most accounts the resolver stores")
	fs.BoolVar(&o.NoDelete, "no-delete", false, "write allow_delete: false into nats-server.conf")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	if err := fs.refuseEmptyValues(stderr); err != nil {
		return err
	}
	// --kv-bucket is of the JetStream store: with the file store it went
	// into service.creds' permissions alone, not into the config (which
	// has no bucket), and init said nothing.
	kvBucketSet := false
	fs.Visit(func(f *flag.Flag) { kvBucketSet = kvBucketSet || f.Name == "kv-bucket" })
	if kvBucketSet && o.Store == bootstrap.StoreFile {
		return fmt.Errorf("init: --kv-bucket applies to --store %s only; the %s store keeps no bucket: leave it out", bootstrap.StoreJetStream, bootstrap.StoreFile)
	}
	if o.Dir == "" {
		fs.printHelp(stderr)
		return errors.New("init: --dir is required")
	}
	res, err := bootstrap.Init(o)
	if err != nil {
		return err
	}
	printInit(stdout, res)
	fmt.Fprintf(stdout, "\nNext, in two terminals:\n  nats-server -c %s\n  %s serve --config %s\n",
		shellQuote(res.ServerConf), invokedAs(os.Args[0]), shellQuote(res.Config))
	fmt.Fprintf(stdout, "\nThen try:\n  %s\n", tryLine(res.URL, res.AdminCreds, o.SubjectPrefix))
	if res.Store == bootstrap.StoreJetStream {
		fmt.Fprintf(stdout, "\nWith Docker, a 3-node cluster and two provisioners: docker-compose.yml (its first lines say what to do first).\n")
	}
	return nil
}

func printInit(w io.Writer, res *bootstrap.Result) {
	fmt.Fprintf(w, "Wrote a new deployment (%s store) to %s:\n", res.Store, res.Dir)
	for _, f := range res.Files {
		fmt.Fprintf(w, "  %s\n", f)
	}
	fmt.Fprintf(w, "\nOperator        %s (identity key in %s: move it offline)\n", res.Operator, filepath.Join(res.Dir, bootstrap.OfflineDir))
	fmt.Fprintf(w, "Signing key     %s (the provisioner signs with this one)\n", res.OperatorSigning)
	fmt.Fprintf(w, "System account  %s\n", res.SystemAccount)
	fmt.Fprintf(w, "Service account %s (%s: the provisioner's own, with JetStream)\n", res.ServiceAccount, bootstrap.ServiceAccountName)
}

// tryLine is a ready-to-paste request that creates an account. The admin
// may read replies on its own inbox prefix only, so the line sets it.
func tryLine(url, creds, prefix string) string {
	return fmt.Sprintf(`nats --server %s --creds %s --inbox-prefix %s request %s.account.create '{"name":"demo"}'`,
		shellQuote(url), shellQuote(creds), bootstrap.AdminInboxPrefix, prefix)
}

// invokedAs returns how to run this program again from where it was
// started, for lines meant to be pasted: arg0 (os.Args[0]) as given, which
// is "./provisioner" when run as ./provisioner and "provisioner" when found
// on PATH, but "go run ./cmd/provisioner" for a binary of `go run`, which is
// gone once it exits (or kept in the build cache under a hash).
func invokedAs(arg0 string) string {
	if arg0 == "" {
		return "provisioner"
	}
	dir := filepath.Dir(arg0)
	if filepath.Base(dir) == "exe" && strings.HasPrefix(filepath.Base(filepath.Dir(filepath.Dir(dir))), "go-build") ||
		goRunCacheDir.MatchString(filepath.Base(dir)) {
		return "go run ./cmd/provisioner"
	}
	return shellQuote(arg0)
}

// goRunCacheDir is the directory name under which the build cache keeps
// the binaries of `go run`.
var goRunCacheDir = regexp.MustCompile(`^[0-9a-f]{64}-d$`)

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./:,=@%+-]+$`)

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
