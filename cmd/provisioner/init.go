package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/natsprov/provisioner/bootstrap"
)

func runInit(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o bootstrap.Options
	fs.StringVar(&o.Dir, "dir", "", "directory to write the deployment into (required; nothing in it is overwritten)")
	fs.StringVar(&o.Host, "host", "127.0.0.1", "address nats-server listens on, and the provisioner connects to")
	fs.IntVar(&o.Port, "port", 4222, "client port of nats-server")
	fs.StringVar(&o.OperatorName, "operator-name", "provisioner", "name of the new operator")
	fs.StringVar(&o.SubjectPrefix, "prefix", "prov", "subject prefix of the provisioning requests")
	fs.IntVar(&o.ResolverLimit, "resolver-limit", 10000, "most accounts the resolver stores")
	fs.BoolVar(&o.NoDelete, "no-delete", false, "write allow_delete: false into nats-server.conf")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.Dir == "" {
		fs.Usage()
		return errors.New("init: --dir is required")
	}
	res, err := bootstrap.Init(o)
	if err != nil {
		return err
	}
	printInit(stdout, res)
	fmt.Fprintf(stdout, "\nNext, in two terminals:\n  nats-server -c %s\n  provisioner serve --config %s\n",
		res.ServerConf, res.Config)
	fmt.Fprintf(stdout, "\nThen try:\n  %s\n", tryLine(res.URL, res.AdminCreds, o.SubjectPrefix))
	return nil
}

func printInit(w io.Writer, res *bootstrap.Result) {
	fmt.Fprintf(w, "Wrote a new deployment to %s:\n", res.Dir)
	for _, f := range res.Files {
		fmt.Fprintf(w, "  %s\n", f)
	}
	fmt.Fprintf(w, "\nOperator       %s (identity key in %s: move it offline)\n", res.Operator, filepath.Join(res.Dir, bootstrap.OfflineDir))
	fmt.Fprintf(w, "Signing key    %s (the provisioner signs with this one)\n", res.OperatorSigning)
	fmt.Fprintf(w, "System account %s\n", res.SystemAccount)
}

// tryLine is a ready-to-paste request that creates an account.
func tryLine(url, creds, prefix string) string {
	return fmt.Sprintf(`nats --server %s --creds %s request %s.account.create '{"name":"demo"}'`, url, creds, prefix)
}
