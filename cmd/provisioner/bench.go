package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"github.com/natsprov/provisioner/bench"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o bench.Options
	fs.IntVar(&o.N, "n", 2000, "operations per measurement")
	fs.IntVar(&o.C, "c", 8, "concurrent requesters")
	fs.IntVar(&o.Rounds, "rounds", 5, "interleaved rounds each measurement is split into")
	fs.IntVar(&o.Accounts, "accounts", 0, "scale mode: also measure costs at 1,000 and at this many accounts")
	fs.StringVar(&o.Dir, "dir", "", "directory for the embedded deployment (default: a temp dir, removed after)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (service included) to this file")
	strict := fs.Bool("strict", false, "exit non-zero when a target is missed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	keep := o.Dir != ""
	env, err := bench.Start(ctx, o)
	if err != nil {
		return err
	}
	defer func() {
		env.Stop()
		if !keep {
			os.RemoveAll(env.Dir)
		}
	}()
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
	if !*asJSON {
		fmt.Fprintf(stderr, "bench: n=%d c=%d rounds=%d accounts=%d, embedded nats-server at %s\n", o.N, o.C, o.Rounds, o.Accounts, env.Server.URL())
	}
	rep, err := bench.Run(ctx, env, o)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.Print(stdout)
	}
	if *strict && rep.Failed() {
		return errors.New("bench: a target was missed")
	}
	return nil
}
