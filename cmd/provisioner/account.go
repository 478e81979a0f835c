package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/client"
)

// runAccount is "provisioner account VERB": accounts, through the service.
func runAccount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return dispatch(ctx, "account", "create, list, show, change and delete accounts through the provisioning service", []subcommand{
		{"create", "create an account and push it to the servers", runAccountCreate},
		{"list", "list the accounts the service manages", runAccountList},
		{"get", "show an account: its key, limits and tags", runAccountGet},
		{"update", "change an account's limits, description or tags", runAccountUpdate},
		{"delete", "disable an account, delete it from the servers and forget it", runAccountDelete},
	}, args, stdout, stderr)
}

// accountFlags are the flags of create and update: each is sent only when
// given, so an update changes only those.
type accountFlags struct {
	limits      api.AccountLimits
	description optString
	tags        stringList
}

func addAccountFlags(c *command, unset string) *accountFlags {
	f := &accountFlags{}
	l := &f.limits
	count := func(name string, p **int64, what string) {
		c.Var(limitFlag{p: p}, name, fmt.Sprintf("most %s: a number `N`, -1 for unlimited (default %s)", what, unset))
	}
	size := func(name string, p **int64, what, def string) {
		c.Var(limitFlag{p: p, size: true}, name, fmt.Sprintf("%s: `BYTES` such as 512K or 1G (1024-based), -1 for unlimited (default %s)", what, def))
	}
	count("conn", &l.Conn, "client connections")
	count("subs", &l.Subs, "subscriptions")
	count("leaf", &l.Leaf, "leaf node connections")
	size("data", &l.Data, "most data in flight per connection", unset)
	size("payload", &l.Payload, "largest message payload", unset)
	jsDefault := "0, JetStream off"
	if unset == "unchanged" {
		jsDefault = unset
	}
	size("mem-storage", &l.MemStorage, "JetStream memory storage (JetStream is on when this or --disk-storage is not 0)", jsDefault)
	size("disk-storage", &l.DiskStorage, "JetStream disk storage", jsDefault)
	c.Var(&f.description, "description", "a `TEXT` describing the account")
	tagUsage := "a `TAG` such as tier:gold; repeat for more"
	if unset == "unchanged" {
		tagUsage += "; the tags given replace the account's tags"
	}
	c.Var(&f.tags, "tag", tagUsage)
	return f
}

// givenLimits returns the limits when any was given, else nil.
func (f *accountFlags) givenLimits() *api.AccountLimits {
	if reflect.ValueOf(f.limits).IsZero() {
		return nil
	}
	l := f.limits
	return &l
}

func runAccountCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("account create", "create an account and push it to the servers",
		"provisioner account create NAME [flags]",
		"provisioner account create acme --conn 100 --disk-storage 1G --tag tier:gold")
	f := addAccountFlags(cmd, "unlimited")
	conn := addConnFlags(cmd)
	if err := cmd.parse(args, stdout, stderr, "NAME"); err != nil {
		return err
	}
	req := api.CreateAccountRequest{Name: cmd.Arg(0), Limits: f.givenLimits(), Tags: f.tags}
	if f.description.set {
		req.Description = f.description.v
	}
	return change(ctx, "account create", conn, stdout, func(ctx context.Context, c *client.Client) (*api.AccountReply, error) {
		return c.CreateAccount(ctx, req)
	},
		func(w io.Writer, rep *api.AccountReply) error { printAccountChange(w, "Created", rep); return nil },
		func(rep *api.AccountReply) string {
			return fmt.Sprintf("account %s was created (%s)", rep.Account.Name, rep.Account.PublicKey)
		})
}

func runAccountUpdate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("account update", "change an account's limits, description or tags; only the flags given change",
		"provisioner account update ACCOUNT [flags]",
		"provisioner account update acme --conn 200 --tag tier:platinum")
	f := addAccountFlags(cmd, "unchanged")
	conn := addConnFlags(cmd)
	if err := cmd.parse(args, stdout, stderr, "ACCOUNT"); err != nil {
		return err
	}
	req := api.UpdateAccountRequest{Account: cmd.Arg(0), Limits: f.givenLimits()}
	if f.description.set {
		req.Description = &f.description.v
	}
	if f.tags != nil {
		tags := []string(f.tags)
		req.Tags = &tags
	}
	if req.Limits == nil && req.Description == nil && req.Tags == nil {
		cmd.printHelp(stderr)
		return errors.New("account update: nothing to change; give a limit, --description or --tag")
	}
	return change(ctx, "account update", conn, stdout, func(ctx context.Context, c *client.Client) (*api.AccountReply, error) {
		return c.UpdateAccount(ctx, req)
	},
		func(w io.Writer, rep *api.AccountReply) error { printAccountChange(w, "Updated", rep); return nil },
		func(rep *api.AccountReply) string {
			return fmt.Sprintf("account %s was updated (%s)", rep.Account.Name, rep.Account.PublicKey)
		})
}

func runAccountList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("account list", "list the accounts the service manages, by name",
		"provisioner account list [flags]",
		"provisioner account list --json")
	conn := addConnFlags(cmd)
	if err := cmd.parse(args, stdout, stderr); err != nil {
		return err
	}
	// Every page, as one reply: {"accounts":[...],"total":N}. With
	// records the service cannot read, the accounts it could are printed
	// (with "unreadable":N), then the command fails: the list is not
	// whole, and an operator shown only the error saw none of it.
	var incomplete error
	all := func(ctx context.Context, c *client.Client) (api.ListAccountsReply, error) {
		accounts, err := collect(c.Accounts(ctx, api.ListRequest{}))
		rep := api.ListAccountsReply{Accounts: accounts, Total: len(accounts)}
		if u, ok := errors.AsType[*client.UnreadableError](err); ok {
			rep.Unreadable, incomplete, err = u.Count, err, nil
		}
		return rep, err
	}
	err := request(ctx, conn, stdout, all, func(w io.Writer, all api.ListAccountsReply) error {
		if len(all.Accounts) == 0 {
			if all.Unreadable > 0 {
				fmt.Fprintln(w, "No account could be read.")
			} else {
				fmt.Fprintln(w, "No accounts.")
			}
			return nil
		}
		tw := table(w)
		fmt.Fprintln(tw, "NAME\tPUBLIC KEY")
		for _, a := range all.Accounts {
			fmt.Fprintf(tw, "%s\t%s\n", a.Name, a.PublicKey)
		}
		return tw.Flush()
	})
	if err == nil {
		err = incomplete
	}
	return err
}

func runAccountGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("account get", "show an account: its key, limits, tags and signing keys",
		"provisioner account get ACCOUNT [flags]    (ACCOUNT is a name or an A... public key)",
		"provisioner account get acme")
	conn := addConnFlags(cmd)
	if err := cmd.parse(args, stdout, stderr, "ACCOUNT"); err != nil {
		return err
	}
	get := func(ctx context.Context, c *client.Client) (*api.AccountReply, error) {
		return c.GetAccount(ctx, api.AccountRequest{Account: cmd.Arg(0)})
	}
	return request(ctx, conn, stdout, get, printAccount)
}

// printAccount prints an account as account get shows it.
func printAccount(w io.Writer, rep *api.AccountReply) error {
	tw := table(w)
	fmt.Fprintf(tw, "Name\t%s\n", rep.Account.Name)
	fmt.Fprintf(tw, "Public key\t%s\n", rep.Account.PublicKey)
	if ac := rep.Account.Claims; ac != nil {
		if ac.Description != "" {
			fmt.Fprintf(tw, "Description\t%s\n", ac.Description)
		}
		if len(ac.Tags) > 0 {
			fmt.Fprintf(tw, "Tags\t%s\n", strings.Join(ac.Tags, ", "))
		}
		l := ac.Limits
		fmt.Fprintf(tw, "Connections\t%s\n", count(l.Conn))
		fmt.Fprintf(tw, "Subscriptions\t%s\n", count(l.Subs))
		fmt.Fprintf(tw, "Leaf nodes\t%s\n", count(l.LeafNodeConn))
		fmt.Fprintf(tw, "Data\t%s\n", size(l.Data))
		fmt.Fprintf(tw, "Payload\t%s\n", size(l.Payload))
		switch {
		case len(l.JetStreamTieredLimits) > 0:
			// Per replica tier: the flat limits are empty, JetStream is on.
			tiers := make([]string, 0, len(l.JetStreamTieredLimits))
			for tier := range l.JetStreamTieredLimits {
				tiers = append(tiers, tier)
			}
			slices.Sort(tiers)
			for i, tier := range tiers {
				t := l.JetStreamTieredLimits[tier]
				title := ""
				if i == 0 {
					title = "JetStream"
				}
				fmt.Fprintf(tw, "%s\t%s: memory %s, disk %s\n", title, tier, size(t.MemoryStorage), size(t.DiskStorage))
			}
		case l.MemoryStorage == 0 && l.DiskStorage == 0:
			fmt.Fprintf(tw, "JetStream\toff\n")
		default:
			fmt.Fprintf(tw, "JetStream\tmemory %s, disk %s\n", size(l.MemoryStorage), size(l.DiskStorage))
		}
		fmt.Fprintf(tw, "Signing keys\t%d\n", len(ac.SigningKeys))
		fmt.Fprintf(tw, "Revocations\t%d\n", len(ac.Revocations))
		if ac.IssuedAt != 0 {
			fmt.Fprintf(tw, "Issued\t%s\n", time.Unix(ac.IssuedAt, 0).UTC().Format(time.RFC3339))
		}
	}
	return tw.Flush()
}

func runAccountDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("account delete", "disable an account (its users are cut off), delete it from the servers and forget it",
		"provisioner account delete ACCOUNT [flags]",
		"provisioner account delete acme")
	conn := addConnFlags(cmd)
	if err := cmd.parse(args, stdout, stderr, "ACCOUNT"); err != nil {
		return err
	}
	del := func(ctx context.Context, c *client.Client) (*api.DeleteAccountReply, error) {
		return c.DeleteAccount(ctx, api.AccountRequest{Account: cmd.Arg(0)})
	}
	return change(ctx, "account delete", conn, stdout, del, func(w io.Writer, rep *api.DeleteAccountReply) error {
		if rep.Phase == api.PhaseDisabled {
			fmt.Fprintf(w, "Disabled account %s; %s\n", rep.Deleted, deleteFollows(rep.Waiting))
		} else {
			fmt.Fprintf(w, "Deleted account %s\n", rep.Deleted)
		}
		printResolver(w, rep.Resolver, rep.ResolverOmitted)
		printCutImports(w, rep.CutImports, rep.CutImportsOmitted, rep.CutImportsIncomplete)
		return nil
	}, func(rep *api.DeleteAccountReply) string {
		if rep.Phase == api.PhaseDisabled {
			return fmt.Sprintf("account %s was disabled; %s", rep.Deleted, deleteFollows(rep.Waiting))
		}
		return fmt.Sprintf("account %s was deleted", rep.Deleted)
	})
}

// printAccountChange prints a created or updated account and the servers'
// answers to its push.
func printAccountChange(w io.Writer, verb string, rep *api.AccountReply) {
	fmt.Fprintf(w, "%s account %s (%s)\n", verb, rep.Account.Name, rep.Account.PublicKey)
	printResolver(w, rep.Resolver, rep.ResolverOmitted)
	printCutImports(w, rep.CutImports, rep.CutImportsOmitted, rep.CutImportsIncomplete)
}

// printCutImports prints the imports of other accounts a change cut off,
// which the server drops from those accounts without a word, and why the
// list may lack some (incomplete).
func printCutImports(w io.Writer, cut []api.CutImport, omitted int, incomplete string) {
	if incomplete != "" {
		fmt.Fprintf(w, "\nThe imports of other accounts this change cut off may not all be listed: %s\n", incomplete)
	}
	if len(cut) == 0 && omitted == 0 {
		return
	}
	fmt.Fprintf(w, "\nThis change cut off %d imports of other accounts (the servers drop them; update or remove them with those accounts' account.update):\n", len(cut)+omitted)
	tw := table(w)
	fmt.Fprintln(tw, "ACCOUNT\tIMPORT\tTYPE\tSUBJECT")
	for _, c := range cut {
		fmt.Fprintf(tw, "%s (%s)\t%s\t%s\t%s\n", c.AccountName, c.Account, c.Name, c.Type, c.Subject)
	}
	tw.Flush()
	if omitted > 0 {
		fmt.Fprintf(w, "(and %d more the reply had no room for; the service's log counts them)\n", omitted)
	}
}

// printResolver prints each server's answer to a push, and how many the
// reply left out.
func printResolver(w io.Writer, replies []api.ServerReply, omitted int) {
	if len(replies) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := table(w)
	fmt.Fprintln(tw, "SERVER\tCODE\tMESSAGE")
	for _, r := range replies {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", r.Server, r.Code, r.Message)
	}
	tw.Flush()
	if omitted > 0 {
		fmt.Fprintf(w, "(and %d more servers' answers the reply had no room for)\n", omitted)
	}
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// count shows a count limit.
func count(v int64) string {
	if v < 0 {
		return "unlimited"
	}
	return strconv.FormatInt(v, 10)
}

// size shows a byte limit, in the largest 1024-based unit that divides it.
func size(v int64) string {
	if v < 0 {
		return "unlimited"
	}
	for _, u := range []struct {
		name string
		n    int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if v >= u.n && v%u.n == 0 {
			return fmt.Sprintf("%d%s", v/u.n, u.name)
		}
	}
	return strconv.FormatInt(v, 10)
}

// limitFlag is a limit that is sent only when given.
type limitFlag struct {
	p    **int64
	size bool
}

func (f limitFlag) String() string {
	if f.p == nil || *f.p == nil {
		return ""
	}
	return strconv.FormatInt(**f.p, 10)
}

func (f limitFlag) Set(s string) error {
	v, err := parseLimit(s, f.size)
	if err != nil {
		return err
	}
	*f.p = &v
	return nil
}

// parseLimit reads a limit: a whole number, -1 or "unlimited", and for
// sizes a 1024-based suffix (K, KB, KiB, M, ..., T).
func parseLimit(s string, isSize bool) (int64, error) {
	t := strings.TrimSpace(s)
	if strings.EqualFold(t, "unlimited") || t == "-1" {
		return -1, nil
	}
	mult := int64(1)
	if isSize {
		upper := strings.ToUpper(t)
		for _, u := range []struct {
			suffix string
			n      int64
		}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
			for _, form := range []string{u.suffix + "IB", u.suffix + "B", u.suffix} {
				if strings.HasSuffix(upper, form) {
					t, mult = strings.TrimSpace(t[:len(t)-len(form)]), u.n
					break
				}
			}
			if mult != 1 {
				break
			}
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/mult {
		if isSize {
			return 0, errors.New("want a number of bytes such as 1048576, 512K or 1G, or -1 for unlimited")
		}
		return 0, errors.New("want a whole number, or -1 for unlimited")
	}
	return v * mult, nil
}

// optString is a string flag that records whether it was given.
type optString struct {
	v   string
	set bool
}

func (o *optString) String() string { return o.v }
func (o *optString) Set(s string) error {
	o.v, o.set = s, true
	return nil
}

// stringList is a flag that may be repeated.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}

var _ flag.Value = limitFlag{}

// deleteFollows says what a delete left disabled waits for: the servers
// named, or none (its last step failed, or the account changed under it:
// the reconciler finishes it), which printed as "once  confirm". With
// none, the DELETE may have gone out already (only the record of the
// finished delete failed) or the servers may refuse deletes
// (allow_delete false): "sends its DELETE" said neither.
func deleteFollows(waiting []string) string {
	if len(waiting) == 0 {
		return "the reconciler finishes the delete"
	}
	return "the DELETE follows once " + strings.Join(waiting, ", ") + " confirm (the reconciler sees to it)"
}
