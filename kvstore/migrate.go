package kvstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// MigrateReport counts what Migrate did.
type MigrateReport struct {
	Accounts MigrateCounts
	Users    MigrateCounts
	// Conflicts names each entry left as it was, and why.
	Conflicts []string
	// BucketOnly names each live account the bucket holds that the source
	// does not: one made through a KV instance, or one the source deleted
	// and dropped after its tombstone's retention, since an earlier run.
	// Migrate never removes; the KV deployment would serve such an
	// account, and push it to the servers, until it is deleted through
	// the service.
	BucketOnly []string
}

// MigrateCounts count the entries of one kind.
type MigrateCounts struct {
	// Copied: missing from the bucket, written.
	Copied int
	// Replaced: in the bucket but older (the account JWT with the lower
	// iat), written over.
	Replaced int
	// Same: already in the bucket as in the source.
	Same int
	// Conflicts: in the bucket, different and not older; left as they are.
	Conflicts int
}

// Migrate copies every account, tombstones included, and every user
// record from src (the file store of a single instance) into the bucket
// of dst, sealing the seeds. It can be run again: an entry the bucket
// holds as in src is skipped, and one that differs and is newer in the
// bucket (an account whose JWT has a greater or equal iat; any user
// record, since user records are never overwritten) is left and reported
// as a conflict, as is an account the bucket removed (a delete marker at
// its key). An account whose name a different live account holds in
// the bucket is a conflict too, and so are its users. Migrate stops at the
// first failure of either store.
func Migrate(ctx context.Context, dst *Store, src provision.Store) (MigrateReport, error) {
	var r MigrateReport
	conflict := func(c *MigrateCounts, format string, args ...any) {
		c.Conflicts++
		r.Conflicts = append(r.Conflicts, fmt.Sprintf(format, args...))
	}
	accounts, err := src.Accounts(ctx)
	if err != nil {
		return r, fmt.Errorf("kvstore: migrate: list source accounts: %w", err)
	}
	// Tombstones first: one the source made since an earlier run frees
	// its name in the bucket, which a later account of the source may
	// have taken again; in name order, that account came first whenever
	// its key sorted first, and was refused the name.
	slices.SortStableFunc(accounts, func(a, b provision.Account) int {
		return cmp.Compare(btoi(phase(a) == provision.PhaseLive), btoi(phase(b) == provision.PhaseLive))
	})
	for _, a := range accounts {
		if err := validAccount(a); err != nil {
			conflict(&r.Accounts, "account %s: %v", a.PublicKey, err)
			continue
		}
		outcome, reason, err := dst.migrateAccount(ctx, a)
		if err != nil {
			return r, fmt.Errorf("kvstore: migrate account %s: %w", a.PublicKey, err)
		}
		switch outcome {
		case copied:
			r.Accounts.Copied++
		case replaced:
			r.Accounts.Replaced++
		case same:
			r.Accounts.Same++
		case kept, absent:
			conflict(&r.Accounts, "account %s (%q): %s", a.PublicKey, a.Name, reason)
		}
		if outcome == absent {
			// Users of an account the bucket does not hold would be
			// orphans; each is a conflict.
			users, err := src.Users(ctx, a.PublicKey)
			if err != nil {
				return r, fmt.Errorf("kvstore: migrate: users of %s: %w", a.PublicKey, err)
			}
			for _, u := range users {
				conflict(&r.Users, "user %s: its account %s is not in the bucket", u.PublicKey, a.PublicKey)
			}
			continue
		}

		users, err := src.Users(ctx, a.PublicKey)
		if err != nil {
			return r, fmt.Errorf("kvstore: migrate: users of %s: %w", a.PublicKey, err)
		}
		for _, u := range users {
			have, err := dst.User(ctx, u.PublicKey)
			switch {
			case err == nil && have.Equal(u):
				r.Users.Same++
			case err == nil:
				conflict(&r.Users, "user %s: the bucket holds another record of it (account %s, name %q)", u.PublicKey, have.Account, have.Name)
			case errors.Is(err, provision.ErrNotFound):
				if err := validUser(u); err != nil {
					conflict(&r.Users, "user %s: %v", u.PublicKey, err)
					continue
				}
				if err := dst.at("migrate: user checked"); err != nil {
					return r, err
				}
				err := dst.addUser(ctx, u, true)
				if errors.Is(err, provision.ErrConflict) {
					// Another migrate run at once stores the same record:
					// no conflict.
					if have, herr := dst.User(ctx, u.PublicKey); herr == nil && have.Equal(u) {
						r.Users.Same++
						continue
					}
					conflict(&r.Users, "user %s: stored meanwhile by another instance", u.PublicKey)
					continue
				}
				if err != nil {
					return r, fmt.Errorf("kvstore: migrate user %s: %w", u.PublicKey, err)
				}
				r.Users.Copied++
			default:
				return r, fmt.Errorf("kvstore: migrate user %s: %w", u.PublicKey, err)
			}
		}
	}
	inSource := make(map[string]bool, len(accounts))
	for _, a := range accounts {
		inSource[a.PublicKey] = true
	}
	held, err := dst.Accounts(ctx)
	if err != nil {
		return r, fmt.Errorf("kvstore: migrate: list the bucket's accounts: %w", err)
	}
	for _, a := range held {
		if a.Live() && !inSource[a.PublicKey] {
			r.BucketOnly = append(r.BucketOnly, fmt.Sprintf("account %s (%q)", a.PublicKey, a.Name))
		}
	}
	return r, nil
}

// outcome is what Migrate did with one account.
type outcome int

const (
	copied   outcome = iota // missing, written
	replaced                // older in the bucket, written over
	same                    // the bucket holds it as it is
	kept                    // the bucket holds another version, left as it is
	absent                  // not in the bucket, and cannot be written
)

// migrateAccount writes a into the bucket unless the bucket holds it, or
// a version of it that is not older. For kept and absent it says why.
func (s *Store) migrateAccount(ctx context.Context, a provision.Account) (outcome, string, error) {
	a.Phase = phase(a)
	have, err := s.Account(ctx, a.PublicKey)
	if errors.Is(err, provision.ErrNotFound) {
		// A key with a delete marker is an account the bucket removed
		// (a delete, dropped after tombstone_retention): a source from
		// before it would bring it back live, seeds and all, and the
		// reconciler would push it to the servers again.
		// A marker a name's take-over left (voidedHeader) is no removal:
		// an earlier run claimed the name, was cut short before the
		// record, and another create took the name since; nor is the
		// marker that removed the record of a create that lost its name.
		// The bucket never held the account: it is copied, if its name is
		// free.
		voided := false
		if m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+accountKey(a.PublicKey)); err == nil && m != nil {
			// A record, not a marker: held but hidden (mirror.visible), a
			// create or revive whose name went to another account. Said
			// to be removed, the operator was told of a delete that never
			// was.
			if (rawEntry{m: m}).Operation() == jetstream.KeyValuePut {
				return absent, "the bucket holds a record of this account but keeps it hidden: its name entry names another account (a create or revive that lost its name, cut short; an instance's next open removes the record or puts its tombstone back); migrate leaves it", nil
			}
			if m.Header.Get(voidedHeader) == "" {
				return absent, "the bucket removed this account (deleted, and dropped after its tombstone's retention); migrate does not bring it back", nil
			}
			voided = true
		} else if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, "", mapErr("read account "+a.PublicKey, err)
		}
		_, err := s.createAccount(ctx, a)
		if errors.Is(err, provision.ErrConflict) {
			if voided {
				return absent, fmt.Sprintf("not in the bucket: an earlier create of it (a migrate run's, or an instance's) lost its name to another account, which has it (%v)", err), nil
			}
			// The key written meanwhile (another migrate run at once, or
			// an instance): compared as if it had been there, so that
			// the same record is no conflict.
			if have, herr := s.Account(ctx, a.PublicKey); herr == nil {
				return s.migrateOver(ctx, a, have)
			}
			return absent, err.Error(), nil
		}
		if err != nil {
			return 0, "", err
		}
		return copied, "", nil
	}
	if err != nil {
		return 0, "", err
	}
	return s.migrateOver(ctx, a, have)
}

// migrateOver writes a over have, the bucket's version of it, unless have
// is the same or not older.
func (s *Store) migrateOver(ctx context.Context, a, have provision.Account) (outcome, string, error) {
	if sameAccount(a, have) {
		return same, "", nil
	}
	srcIat, err1 := issuedAt(a.JWT)
	dstIat, err2 := issuedAt(have.JWT)
	if err1 != nil || err2 != nil {
		return kept, fmt.Sprintf("differs, and the JWTs cannot be compared (source: %v; bucket: %v)", err1, err2), nil
	}
	if srcIat <= dstIat {
		return kept, fmt.Sprintf("the bucket's version differs and is not older (iat %d, source %d)", dstIat, srcIat), nil
	}
	if _, err := s.UpdateAccount(ctx, a, have.Revision); err != nil {
		if errors.Is(err, provision.ErrStale) {
			// Changed meanwhile: by another migrate run at once, to the
			// same, is no conflict.
			if now, lerr := s.AccountLatest(ctx, a.PublicKey); lerr == nil && sameAccount(a, now) {
				return same, "", nil
			}
		}
		if errors.Is(err, provision.ErrInvalid) || errors.Is(err, provision.ErrStale) {
			return kept, err.Error(), nil
		}
		if errors.Is(err, provision.ErrConflict) {
			// A tombstone made live again whose name a different live
			// account holds: a conflict, and so are its users.
			return absent, err.Error(), nil
		}
		return 0, "", err
	}
	return replaced, "", nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func issuedAt(token string) (int64, error) {
	c, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		return 0, err
	}
	return c.IssuedAt, nil
}
