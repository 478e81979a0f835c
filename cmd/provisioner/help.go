package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/natsprov/provisioner/client"
)

// command is a subcommand: its flags, and the help that -h prints to
// stdout. Every command is made the same way:
//
//	cmd := newCommand("account get", "show an account", "provisioner account get ACCOUNT [flags]",
//		"provisioner account get acme")
//	asJSON := cmd.Bool("json", false, "print the reply as JSON")
//	if err := cmd.parse(args, stdout, stderr, "ACCOUNT"); err != nil {
//		return err // flag.ErrHelp after -h: main exits 0
//	}
//	account := cmd.Arg(0)
type command struct {
	*flag.FlagSet
	summary string
	usage   string
	example string
	// groups titles flags shown apart from the command's own, such as the
	// connection flags every client command shares.
	groups []flagGroup
}

type flagGroup struct {
	title string
	names []string
}

// newCommand returns a command named name ("account create"), described by
// a one-line summary, a usage line and an example.
func newCommand(name, summary, usage, example string) *command {
	c := &command{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), summary: summary, usage: usage, example: example}
	// The flag package's own messages are replaced by parse's.
	c.SetOutput(io.Discard)
	c.Usage = func() {}
	return c
}

// group defines flags with define and shows them under their own title in
// the help.
func (c *command) group(title string, define func(fs *flag.FlagSet)) {
	before := map[string]bool{}
	c.VisitAll(func(f *flag.Flag) { before[f.Name] = true })
	define(c.FlagSet)
	g := flagGroup{title: title}
	c.VisitAll(func(f *flag.Flag) {
		if !before[f.Name] {
			g.names = append(g.names, f.Name)
		}
	})
	c.groups = append(c.groups, g)
}

// parse parses args, which may put flags after the positional arguments,
// and checks that exactly the positional arguments named come. After -h
// (or --help) it prints the help to stdout and returns flag.ErrHelp, which
// main treats as success; on bad flags or arguments it prints the help to
// stderr and returns an error naming what was wrong.
func (c *command) parse(args []string, stdout, stderr io.Writer, positional ...string) error {
	err := c.Parse(reorder(c.FlagSet, args))
	switch {
	case errors.Is(err, flag.ErrHelp):
		c.printHelp(stdout)
		return flag.ErrHelp
	case err != nil:
		c.printHelp(stderr)
		return fmt.Errorf("%s: %w", c.Name(), err)
	}
	switch n := c.NArg(); {
	case n < len(positional):
		c.printHelp(stderr)
		return fmt.Errorf("%s: %s is required", c.Name(), strings.Join(positional[n:], " and "))
	case n > len(positional):
		c.printHelp(stderr)
		return fmt.Errorf("%s: unexpected argument %q", c.Name(), c.Arg(len(positional)))
	}
	return nil
}

// refuseEmptyValues refuses a flag given on the command line with an empty
// or zero value, other than those named in allowed (dev's --port 0 means
// any free port). serve's overrides are taken only when not empty. init
// and dev hand their flags to bootstrap (bench to
// bench.Options), whose zero values stand for a flag left out: there
// `--resolver-limit 0` (no limit, to nats-server) became 10000, `--prefix
// ""` prov, and `dev --dir ""` (an unset shell variable) the current
// directory, without a word.
func (c *command) refuseEmptyValues(stderr io.Writer, allowed ...string) error {
	var bad *flag.Flag
	c.Visit(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok || bad != nil || slices.Contains(allowed, f.Name) {
			return
		}
		switch v := g.Get().(type) {
		case string: // "0" is a name (--prefix 0), not a zero
			if v == "" {
				bad = f
			}
		case int:
			if v == 0 {
				bad = f
			}
		}
	})
	if bad == nil {
		return nil
	}
	c.printHelp(stderr)
	if bad.DefValue == "" {
		// An override (serve's): left out, the config's value holds.
		return fmt.Errorf("%s: --%s %q: give a value, or leave the flag out", c.Name(), bad.Name, bad.Value.String())
	}
	return fmt.Errorf("%s: --%s %q: give a value, or leave the flag out for its default (%s)", c.Name(), bad.Name, bad.Value.String(), bad.DefValue)
}

// reorder moves the flags before the positional arguments, since the flag
// package stops at the first argument that is not a flag: "account create
// acme --conn 10" parses like "account create --conn 10 acme". A flag that
// is not boolean takes the next argument as its value. Everything after
// "--" is positional. A flag that takes a value but comes last is left
// last, so that Parse refuses it.
func reorder(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if hasValue || f == nil || isBool(f) {
			continue
		}
		if i+1 == len(args) {
			// A flag that takes a value came last, without one: nothing
			// may follow it, or Parse would take the "--" that ends the
			// flags as its value ("init --dir" writing into "--"). Alone
			// at the end, Parse names it as needing an argument.
			return flags
		}
		i++
		flags = append(flags, args[i])
	}
	return append(append(flags, "--"), pos...)
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// printHelp writes the summary, the usage line, the flags with their
// defaults and the example.
func (c *command) printHelp(w io.Writer) {
	fmt.Fprintf(w, "provisioner %s: %s\n\nUsage:\n  %s\n", c.Name(), c.summary, c.usage)
	grouped := map[string]bool{}
	for _, g := range c.groups {
		for _, n := range g.names {
			grouped[n] = true
		}
	}
	var own []string
	c.VisitAll(func(f *flag.Flag) {
		if !grouped[f.Name] {
			own = append(own, f.Name)
		}
	})
	c.printFlags(w, "Flags", own)
	for _, g := range c.groups {
		c.printFlags(w, g.title, g.names)
	}
	if c.example != "" {
		fmt.Fprintf(w, "\nExample:\n")
		for l := range strings.Lines(c.example) {
			fmt.Fprintf(w, "  %s", l)
		}
		fmt.Fprintln(w)
	}
}

func (c *command) printFlags(w io.Writer, title string, names []string) {
	if len(names) == 0 {
		return
	}
	type row struct{ left, usage string }
	var rows []row
	width := 0
	for _, n := range names {
		f := c.Lookup(n)
		placeholder, usage := flag.UnquoteUsage(f)
		left := "-" + n
		if len(n) > 1 {
			left = "--" + n
		}
		if placeholder != "" && !isBool(f) {
			left += " " + placeholder
		}
		if d := f.DefValue; d != "" && d != "0" && d != "false" && d != "[]" && !strings.Contains(usage, "(default") {
			usage += fmt.Sprintf(" (default %s)", d)
		}
		rows = append(rows, row{left, usage})
		width = max(width, len(left))
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	for _, r := range rows {
		fmt.Fprintf(w, "  %-*s  %s\n", width, r.left, r.usage)
	}
}

// subcommand is one verb of a command group, such as "create" of
// "provisioner account".
type subcommand struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// reported runs a command that changes files (or a bucket) and then
// prints what it did and what comes next. A stdout that fails (a full
// disk, a closed pipe) does not stop it half way (SIGPIPE is notified, as
// for change) nor pass for success: the error says the report could not
// be written and carries it, so that what was done is told on stderr, as
// the client commands exit 2 saying what was done.
func reported(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		defer notifySIGPIPE()()
		var report bytes.Buffer
		w := &errWriter{w: stdout}
		err := run(ctx, args, io.MultiWriter(&report, w), stderr)
		if w.err == nil {
			return err
		}
		if err == nil {
			return fmt.Errorf("%s: done, but its report could not be written: %w; it said:\n%s", name, w.err, strings.TrimRight(report.String(), "\n"))
		}
		return fmt.Errorf("%w\n(its report could not be written either: %v; it said:\n%s)", err, w.err, strings.TrimRight(report.String(), "\n"))
	}
}

// dispatch runs the verb args[0] of a command group. Without a verb, or
// with an unknown one, it lists the verbs on stderr and fails; with -h,
// --help or help it lists them on stdout and returns flag.ErrHelp.
func dispatch(ctx context.Context, group, summary string, verbs []subcommand, args []string, stdout, stderr io.Writer) error {
	help := func(w io.Writer) {
		fmt.Fprintf(w, "provisioner %s: %s\n\nUsage:\n  provisioner %s COMMAND [flags]\n\nCommands:\n", group, summary, group)
		width := 0
		for _, v := range verbs {
			width = max(width, len(v.name))
		}
		for _, v := range verbs {
			fmt.Fprintf(w, "  %-*s  %s\n", width, v.name, v.summary)
		}
		fmt.Fprintf(w, "\nRun \"provisioner %s COMMAND -h\" for a command's flags and an example.\n", group)
	}
	if len(args) == 0 {
		help(stderr)
		return fmt.Errorf("%s: a command is required", group)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		help(stdout)
		return flag.ErrHelp
	}
	for _, v := range verbs {
		if v.name == args[0] {
			return asServiceError(v.run(ctx, args[1:], stdout, stderr))
		}
	}
	help(stderr)
	return fmt.Errorf("%s: unknown command %q", group, args[0])
}

// serviceError is a request the service answered with an error. main
// prints it as "provisioner: <description> (code N)" and exits 1, apart
// from the other failures (bad flags, no connection, no service), which
// exit 2.
type serviceError struct{ err *client.Error }

func (e *serviceError) Error() string { return e.err.Error() }
func (e *serviceError) Unwrap() error { return e.err }

// asServiceError returns err as a *serviceError when the service refused
// the request, and err unchanged otherwise.
func asServiceError(err error) error {
	var ce *client.Error
	var doubt *userInDoubtError
	if errors.As(err, &doubt) {
		// Its message names the key to revoke; exitCode still tells a
		// service's answer (504) from no reply.
		return err
	}
	if errors.As(err, &ce) {
		return &serviceError{ce}
	}
	return err
}

// damagedError is a store check that found damage: the check itself ran,
// and a start would refuse the store. main exits 3 for it, so that a
// script can tell a damaged store from a check that could not run (2).
type damagedError struct{ msg string }

func (e *damagedError) Error() string { return e.msg }

// exitCode is the process's exit code for what run returned: 0 for
// nothing or -h, 1 when the service refused the request (a user create
// in doubt included, when the service answered it 504) or a health
// endpoint answered that its instance does not serve, 3 when store check
// found damage, 2 otherwise.
func exitCode(err error) int {
	var se *serviceError
	var de *damagedError
	var ue *unhealthyError
	var ce *client.Error
	var doubt *userInDoubtError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &se), errors.As(err, &ue), errors.As(err, &doubt) && errors.As(err, &ce):
		return 1
	case errors.As(err, &de):
		return 3
	}
	return 2
}
