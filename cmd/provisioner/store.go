package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

func runStore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return dispatch(ctx, "store", "check or salvage the service's store directory, or migrate it into a JetStream KV bucket", []subcommand{
		{"check", "report what a store holds and every damage; changes nothing", runStoreCheck},
		{"salvage", "copy every intact record of a store into a new store", reported("store salvage", runStoreSalvage)},
		{"migrate", "copy a file store into the KV bucket of a JetStream deployment", reported("store migrate", runStoreMigrate)},
		{"reseal", "seal every seed in a KV bucket with the config's seal_key (after a seal key rotation)", reported("store reseal", runStoreReseal)},
	}, args, stdout, stderr)
}

// loadSealKey loads the seal key file, if one is named.
func loadSealKey(path string) (*seal.Key, error) {
	if path == "" {
		return nil, nil
	}
	return seal.Load(path)
}

// required names the first of the flags that was not given.
func required(cmd *command, stderr io.Writer, flags map[string]*string) error {
	var missing []string
	for name, v := range flags {
		if *v == "" {
			missing = append(missing, "--"+name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		cmd.printHelp(stderr)
		return fmt.Errorf("%s: %s required", cmd.Name(), strings.Join(missing, " and ")+map[bool]string{true: " is", false: " are"}[len(missing) == 1])
	}
	return nil
}

func runStoreCheck(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommand("store check", "report what a store holds (accounts by phase, users, sequence) and every damage found, without changing it",
		"provisioner store check --dir DIR [--seal-key FILE]",
		"provisioner store check --dir /var/lib/provisioner/store")
	dir := fs.String("dir", "", "the store directory (required)")
	keyPath := fs.String("seal-key", "", "the seal key file (SX...), to check sealed seeds against their public keys")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	if err := required(fs, stderr, map[string]*string{"dir": dir}); err != nil {
		return err
	}
	key, err := loadSealKey(*keyPath)
	if err != nil {
		return err
	}
	rep, err := filestore.Check(*dir, key)
	if err != nil {
		return err
	}
	if _, err := rep.WriteTo(stdout); err != nil {
		return err
	}
	switch {
	case rep.Damaged():
		return &damagedError{fmt.Sprintf("store check: %s has %d damaged places, and a start refuses it; `provisioner store salvage --dir %s --to NEWDIR` copies what is intact", *dir, len(rep.Damage), *dir)}
	case rep.Refuses():
		return &damagedError{fmt.Sprintf("store check: a start refuses %s: %s", *dir, strings.Join(rep.Refused, "; "))}
	case rep.Format == "empty":
		// Nothing was checked: a mistyped --dir that exists (the store's
		// parent, say) must not pass as an intact store.
		return fmt.Errorf("store check: %s holds no store (no snapshot.v2 or journal.v2, nor a previous version's snapshot.json or journal): nothing to check; is it the service's store_dir?", *dir)
	}
	return nil
}

func runStoreSalvage(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommand("store salvage", "copy every intact record of a store into a new store, for a person to inspect and put in place; the store itself is not changed",
		"provisioner store salvage --dir DIR --to NEWDIR [--seal-key FILE]",
		"provisioner store salvage --dir /var/lib/provisioner/store --to /var/lib/provisioner/store.salvaged")
	dir := fs.String("dir", "", "the store directory to read (required)")
	to := fs.String("to", "", "the directory to write the new store into; must not exist or be empty (required)")
	keyPath := fs.String("seal-key", "", "the seal key file (SX...), to check sealed seeds against their public keys")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	if err := required(fs, stderr, map[string]*string{"dir": dir, "to": to}); err != nil {
		return err
	}
	key, err := loadSealKey(*keyPath)
	if err != nil {
		return err
	}
	rep, err := filestore.Salvage(*dir, *to, key)
	// A salvage refused before it read the store (a target that is not
	// empty, a store that cannot be read) has no report: printed, it
	// would say "damage none" of a store it never read.
	// A stdout that fails is for reported to tell, after the rest: the
	// write error returned here read as a salvage that failed.
	if rep.Format != "" {
		_, _ = rep.WriteTo(stdout)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nThe new store is in %s. Check it (provisioner store check --dir %s), then stop the service and put it in place of %s.\n", *to, *to, *dir)
	return nil
}

func runStoreMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommand("store migrate", "copy a file store into the JetStream KV bucket a config names, sealing its seeds; run it again safely: what is there already is skipped, and an entry the bucket holds newer, or a name the bucket gives another account, is left as it is and reported",
		"provisioner store migrate --from-dir DIR --config FILE [--seal-key FILE]",
		"provisioner store migrate --from-dir /var/lib/provisioner/store --config deploy/config.json")
	dir := fs.String("from-dir", "", "the file store directory to copy (required; it is not changed; a service may serve from it meanwhile, for a rehearsal, but what it writes after the read is not copied: run again after stopping it)")
	path := fs.String("config", "", "the config of the JetStream deployment: service_creds, kv_bucket, kv_replicas, seal_key (required)")
	keyPath := fs.String("seal-key", "", "the seal key of the file store, when its seeds are sealed with another key than the config's")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	if err := required(fs, stderr, map[string]*string{"from-dir": dir, "config": path}); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if cfg.StoreKind() != config.StoreJetStream {
		return fmt.Errorf("store migrate: %s has store_dir set: it is a file store deployment; migrate into a config without store_dir", *path)
	}
	dst, err := seal.Load(cfg.SealKey, cfg.SealKeyPrevious...)
	if err != nil {
		return err
	}
	srcKey := dst
	if *keyPath != "" {
		if srcKey, err = loadSealKey(*keyPath); err != nil {
			return err
		}
	}
	// The store is read without its lock: a service that has it open (a
	// rehearsal) goes on, and the log says so, for the final run to
	// follow its stop.
	// Both stores say on stderr what they note (a service that has the
	// file store open; a bucket made with one replica).
	log := slog.New(slog.NewTextHandler(stderr, nil))
	src, err := filestore.Open(*dir, filestore.Options{Seal: srcKey, Existing: true, Logger: log})
	switch {
	case errors.Is(err, filestore.ErrSealKey) && *keyPath == "":
		// A KV deployment made by init has a seal key of its own: the
		// file store's error alone names neither way to give its key.
		return fmt.Errorf("store migrate: %w; the file store's seeds are sealed with another key than seal_key (or seal_key_previous) of %s: give the file deployment's seal key with --seal-key FILE, or list it in seal_key_previous", err, *path)
	case errors.Is(err, filestore.ErrSealKey):
		return fmt.Errorf("store migrate: %w; --seal-key %s is not the key that sealed them: give the file deployment's seal_key", err, *keyPath)
	case err != nil:
		return err
	}
	defer src.Close()
	creds, err := credsOption("service_creds", cfg.ServiceCreds)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(cfg.NATSURL, creds, nats.CustomInboxPrefix(bootstrap.ServiceInboxPrefix))
	if err != nil {
		return fmt.Errorf("connect to %s with %s: %w", config.RedactURL(cfg.NATSURL), cfg.ServiceCreds, err)
	}
	defer nc.Close()
	kv, err := kvstore.Open(ctx, nc, kvstore.Options{Bucket: cfg.KVBucket, Replicas: cfg.KVReplicas, Seal: dst, Instance: cfg.Instance + "-migrate", Logger: log})
	if err != nil {
		return err
	}
	defer kv.Close()
	rep, err := kvstore.Migrate(ctx, kv, src)
	fmt.Fprintf(stdout, "accounts: %d copied, %d replaced (older in the bucket), %d already there, %d conflicts\n", rep.Accounts.Copied, rep.Accounts.Replaced, rep.Accounts.Same, rep.Accounts.Conflicts)
	fmt.Fprintf(stdout, "users:    %d copied, %d replaced, %d already there, %d conflicts\n", rep.Users.Copied, rep.Users.Replaced, rep.Users.Same, rep.Users.Conflicts)
	for _, c := range rep.Conflicts {
		fmt.Fprintf(stdout, "  left as it is: %s\n", c)
	}
	for _, b := range rep.BucketOnly {
		fmt.Fprintf(stdout, "  in the bucket only: %s (the file store deleted it since an earlier run, or a KV instance made it; if deleted, delete it through the service before the KV deployment serves)\n", b)
	}
	if err != nil {
		return err
	}
	if len(rep.Conflicts) > 0 {
		return fmt.Errorf("store migrate: %d entries were left as they are, each listed above with why", len(rep.Conflicts))
	}
	return nil
}

func runStoreReseal(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommand("store reseal", "seal every account seed in the config's KV bucket with its seal_key, opening them with seal_key_previous: after this, the previous keys can go (the file store does the same at every start)",
		"provisioner store reseal --config FILE",
		"provisioner store reseal --config deploy/config.json")
	path := fs.String("config", "", "the config of the JetStream deployment (required)")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	if err := required(fs, stderr, map[string]*string{"config": path}); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if cfg.StoreKind() != config.StoreJetStream {
		return fmt.Errorf("store reseal: %s names a file store, which seals its seeds anew at every start", *path)
	}
	key, err := seal.Load(cfg.SealKey, cfg.SealKeyPrevious...)
	if err != nil {
		return err
	}
	creds, err := credsOption("service_creds", cfg.ServiceCreds)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(cfg.NATSURL, creds, nats.CustomInboxPrefix(bootstrap.ServiceInboxPrefix))
	if err != nil {
		return fmt.Errorf("connect to %s with %s: %w", config.RedactURL(cfg.NATSURL), cfg.ServiceCreds, err)
	}
	defer nc.Close()
	// Existing: a bucket made here (nats_url pointing at another cluster)
	// would be resealed with nothing in it, and the old key said to be
	// free to go while the real bucket still needs it.
	kv, err := kvstore.Open(ctx, nc, kvstore.Options{Bucket: cfg.KVBucket, Replicas: cfg.KVReplicas, Seal: key, Instance: cfg.Instance + "-reseal", Existing: true, Logger: slog.New(slog.NewTextHandler(stderr, nil))})
	if errors.Is(err, kvstore.ErrNoBucket) {
		return fmt.Errorf("store reseal: %w; nothing was resealed: check nats_url, service_creds and kv_bucket in %s (the previous seal keys are still needed)", err, *path)
	}
	if err != nil {
		return err
	}
	defer kv.Close()
	accounts, err := kv.Accounts(ctx)
	if err != nil {
		return err
	}
	if resealListed != nil {
		resealListed(ctx)
	}
	n := 0
	for _, a := range accounts {
		// Writing a record seals anew what the current key did not seal;
		// a change made meanwhile by a running instance wins (ErrStale),
		// and the check below finds it if that instance sealed it with an
		// older key. One removed meanwhile (a running instance's
		// reconciler drops tombstones) holds nothing left to seal.
		_, err := kv.UpdateAccount(ctx, a, a.Revision)
		if errors.Is(err, provision.ErrNotFound) {
			continue
		}
		if err != nil && !errors.Is(err, provision.ErrStale) {
			return fmt.Errorf("store reseal: account %s: %w", a.PublicKey, err)
		}
		n++
	}
	// An instance still running with an older key as its seal_key seals
	// what it writes with that key, and the next start without that key
	// refuses the record: before saying the previous keys can go, read the
	// bucket itself and write again what is not sealed with the current
	// key, a few times, for a change that was on its way.
	var older []string
	// hidden: accounts listed whose record the store does not show (a
	// create that lost its name to another account, cut short before it
	// removed its record, or one whose name entry was damaged by hand): no
	// instance writes them again; the open of the bucket removes the
	// first (the sweep), and logs the second for an operator to repair.
	hidden := map[string]bool{}
	for try := 0; ; try++ {
		if resealChecking != nil {
			resealChecking(ctx)
		}
		if older, err = kv.SealedByOlderKeys(ctx); err != nil {
			return fmt.Errorf("store reseal: check: %w", err)
		}
		if len(older) == 0 || try == resealTries {
			break
		}
		for _, pub := range older {
			a, err := kv.AccountLatest(ctx, pub)
			if errors.Is(err, provision.ErrNotFound) {
				// Removed meanwhile (not listed again), or hidden.
				hidden[pub] = true
				continue
			}
			delete(hidden, pub)
			if err != nil {
				return fmt.Errorf("store reseal: account %s: %w", pub, err)
			}
			// ErrNotFound: removed meanwhile, not listed again.
			_, err = kv.UpdateAccount(ctx, a, a.Revision)
			if err != nil && !errors.Is(err, provision.ErrStale) && !errors.Is(err, provision.ErrNotFound) {
				return fmt.Errorf("store reseal: account %s: %w", pub, err)
			}
		}
	}
	var live []string
	for _, pub := range older {
		if !hidden[pub] {
			live = append(live, pub)
		}
	}
	if len(live) < len(older) {
		first := ""
		for _, pub := range older {
			if hidden[pub] {
				first = pub
				break
			}
		}
		return fmt.Errorf("store reseal: %d accounts are still sealed with a previous key, %d of them (first: %s) in a record the store does not show: a create that lost its name to another account and was cut short before removing its record, which opening the bucket removes (even without the previous key), or a record whose name entry was damaged by hand, which the open keeps and logs at ERROR with the repair; run reseal again (after that repair); keep seal_key_previous until reseal succeeds", len(older), len(older)-len(live), first)
	}
	if len(older) > 0 {
		return fmt.Errorf("store reseal: %d accounts are still sealed with a previous key (first: %s): an instance still runs with it as its seal_key; restart every instance with the seal_key of %s (%s), then run reseal again; keep seal_key_previous until reseal succeeds", len(older), older[0], *path, key.PublicKey())
	}
	fmt.Fprintf(stdout, "%d accounts written with their seeds sealed by %s; the previous seal keys can go\n", n, key.PublicKey())
	return nil
}

// resealTries is how many times reseal writes again the accounts a
// running instance sealed with an older key meanwhile, before it gives up.
const resealTries = 3

// resealListed, set by tests only, runs after reseal listed the accounts,
// before it writes them.
var resealListed func(ctx context.Context)

// resealChecking, set by tests only, runs before each check of the
// bucket's seals: where another instance's write falls between reseal's
// writes and its check.
var resealChecking func(ctx context.Context)
