package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// checkExports refuses an export revocation that names no account: the
// server matches an export's revocations against the importing accounts'
// keys (or "*", every account), so any other string revokes nothing, and
// the import it was meant to cut off goes on working; so do the
// revocations of an export that takes no activation. It refuses an
// export's name, description or info_url with a control or invisible
// character as an account's own are (checkText, checkDescription): they go
// into the account JWT that every tool prints. It refuses two exports of
// one type whose subjects overlap though neither holds the other (a.*.c
// and a.b.*; one that holds the other the claims' validation refuses):
// the server serves an import of a subject both hold (a.b.c) by the one
// it meets first in a map, at random, so one public and one private serve
// it to some importers and not to others. Two on the same terms (both
// public, say) serve it alike, whichever is picked, and are taken.
func checkExports(exports jwt.Exports) error {
	for i, e := range exports {
		for j := i + 1; j < len(exports); j++ {
			o := exports[j]
			if e == nil || o == nil || e.Type != o.Type || !subjectsOverlap(e.Subject, o.Subject) || e.Subject.IsContainedIn(o.Subject) || o.Subject.IsContainedIn(e.Subject) || sameTerms(e, o) {
				continue
			}
			return fmt.Errorf("%w: \"exports[%d]\" (%s %q) and \"exports[%d]\" (%q) overlap: the server serves an import of a subject both hold by either, picked at random, and judges it by that one's terms; narrow one of them so that no subject is in both", ErrInvalid, i, e.Type, e.Subject, j, o.Subject)
		}
	}
	for i, e := range exports {
		if e == nil {
			continue // the claims' validation names it
		}
		if err := checkText(fmt.Sprintf("exports[%d].name", i), e.Name); err != nil {
			return err
		}
		if err := checkDescription(fmt.Sprintf("exports[%d].description", i), e.Description); err != nil {
			return err
		}
		if err := checkText(fmt.Sprintf("exports[%d].info_url", i), e.InfoURL); err != nil {
			return err
		}
		for k := range e.Revocations {
			if k != jwt.All && !nkeys.IsValidPublicAccountKey(k) {
				return fmt.Errorf("%w: \"exports[%d].revocations\": %q is not an account public key (A...) or \"*\": it would revoke no import", ErrInvalid, i, k)
			}
		}
		// The server checks revocations against activations only
		// (checkAuth): an export that takes none, public or with
		// account_token_position, serves every import its revocations
		// name.
		if len(e.Revocations) > 0 && (!e.TokenReq || e.AccountTokenPosition > 0) {
			return fmt.Errorf("%w: \"exports[%d].revocations\": export %q takes no activation token (it needs \"token_req\" and no \"account_token_position\"): its revocations would revoke no import; make it private, or remove its revocations", ErrInvalid, i, e.Subject)
		}
	}
	return nil
}

// setImports checks an account's imports against what their exporters
// export and sets them. An import's account may be named by a managed
// account's name. An import of a private export (token_req) from a managed
// account gets an activation token signed by the exporting account's
// signing key; from an account this service does not manage, the request
// must carry the token. An import of a subject its exporter does not
// export is refused, naming it. The self-service import the service
// manages is kept out of this: setSelfService owns it.
func (s *Service) setImports(ctx context.Context, a *Account, c *jwt.AccountClaims, imports jwt.Imports) error {
	out := jwt.Imports{}
	for i, in := range imports {
		if in == nil {
			return fmt.Errorf("%w: \"imports[%d]\" is empty", ErrInvalid, i)
		}
		im := *in
		// An import's name goes into the account JWT as an export's does
		// (checkExports).
		if err := checkText(fmt.Sprintf("imports[%d].name", i), im.Name); err != nil {
			return err
		}
		if im.Name == selfImportName {
			return fmt.Errorf("%w: \"imports[%d]\": the name %q is the service's own; choose another", ErrInvalid, i, selfImportName)
		}
		exporter, claims, signer, err := s.exporter(ctx, im.Account)
		if err != nil {
			return fmt.Errorf("\"imports[%d]\" (%s): %w", i, im.Subject, err)
		}
		if exporter == a.PublicKey {
			return fmt.Errorf("%w: \"imports[%d]\": an account cannot import from itself", ErrInvalid, i)
		}
		im.Account = exporter
		export := findExport(claims, &im)
		if export == nil {
			return fmt.Errorf("%w: \"imports[%d]\": account %q (%s) exports no %s %q", ErrInvalid, i, claims.Name, exporter, im.Type, im.Subject)
		}
		if other := otherExport(claims, &im, export); other != nil {
			// An account this service does not manage (or one stored
			// before checkExports refused them) may hold exports that
			// overlap: the server serves the import by either, picked
			// at random, one public and one private to some importers
			// and not to others.
			return fmt.Errorf("%w: \"imports[%d]\": account %q (%s) exports %s %q by two exports, %q and %q, and the server serves the import by either, picked at random, on that one's terms: import a subject only one of them holds", ErrInvalid, i, claims.Name, exporter, im.Type, im.Subject, export.Subject, other.Subject)
		}
		if pos := export.AccountTokenPosition; pos > 0 {
			// The server serves such an export to an importer only on
			// subjects holding the importer's own key at that token
			// (checkAuth); any other import it leaves out of the
			// account, which it takes all the same: nothing crosses.
			tokens := strings.Split(string(im.Subject), ".")
			if uint(len(tokens)) < pos || tokens[pos-1] != a.PublicKey {
				return fmt.Errorf("%w: \"imports[%d]\": %s %q of account %s serves each account only the subjects holding its own public key at token %d, and %q does not hold this account's (%s) there: the server would leave the import out (an account.create cannot name the key it makes: add such an import with account.update)", ErrInvalid, i, im.Type, export.Subject, exporter, pos, im.Subject, a.PublicKey)
			}
		}
		// The server checks no activation of an account_token_position
		// export, private or not (checkAuth): the subject's token is
		// the importer's proof. An import of one needs no token.
		private := export.TokenReq && export.AccountTokenPosition == 0
		if private && im.Token == "" {
			if signer == nil {
				return fmt.Errorf("%w: \"imports[%d]\": %s %q of account %s is private: give its activation \"token\"", ErrInvalid, i, im.Type, im.Subject, exporter)
			}
			act := jwt.NewActivationClaims(a.PublicKey)
			act.Name = string(im.Subject)
			act.ImportSubject = im.Subject
			act.ImportType = im.Type
			act.IssuerAccount = exporter
			token, err := act.Encode(signer)
			if err != nil {
				return fmt.Errorf("sign the activation of %q for account %s: %w", im.Subject, a.PublicKey, err)
			}
			im.Token = token
			// An export that revokes this account's activations up to
			// a time still to come revokes the one just signed: the
			// server would leave the import out.
			if err := checkActivation(i, &im, exporter, claims, export, true); err != nil {
				return err
			}
		} else if private {
			if err := checkActivation(i, &im, exporter, claims, export, signer != nil); err != nil {
				return err
			}
		}
		out = append(out, &im)
	}
	kept := jwt.Imports{}
	for _, im := range c.Imports {
		if im.Name == selfImportName {
			kept = append(kept, im)
		}
	}
	c.Imports = append(kept, out...)
	vr := jwt.CreateValidationResults()
	c.Imports.Validate(a.PublicKey, vr)
	if errs := vr.Errors(); len(errs) > 0 {
		return fmt.Errorf("%w: \"imports\": %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// checkActivation refuses an import of a private export whose activation
// token the server would not take, as it checks it (checkActivation,
// isIssuerClaimTrusted): signed by a key its exporter does not list (one a
// rotation with revoke_old removed), not valid yet, expired, or revoked by
// the export. The server leaves such an import out of the account and
// takes the JWT: it was answered as done while nothing crossed it. A token
// it cannot decode, or that names another account, the imports'
// validation refuses. managed says the service signs the exporter's
// activations.
func checkActivation(i int, im *jwt.Import, exporter string, claims *jwt.AccountClaims, export *jwt.Export, managed bool) error {
	if fault := activationFault(im, exporter, claims, export, managed); fault != "" {
		return fmt.Errorf("%w: \"imports[%d]\": %s", ErrInvalid, i, fault)
	}
	return nil
}

// activationFault says why the server would not take im's activation token
// (checkActivation), and what to do; "" when it would, or when the token
// cannot be decoded.
func activationFault(im *jwt.Import, exporter string, claims *jwt.AccountClaims, export *jwt.Export, managed bool) string {
	act, err := jwt.DecodeActivationClaims(im.Token)
	if err != nil {
		return "" // the imports' validation names it
	}
	fix := "give one the exporting account signs now"
	if managed {
		fix = "leave \"token\" out, and the service signs one"
	}
	now := time.Now().Unix()
	switch {
	case act.IssuerAccount != "" && (act.IssuerAccount != exporter || !claims.SigningKeys.Contains(act.Issuer)):
		return fmt.Sprintf("the activation token of %s %q is signed by %s, which account %s no longer lists as a signing key (rotated with \"revoke_old\"?): the server would leave the import out; %s", im.Type, im.Subject, act.Issuer, exporter, fix)
	case act.NotBefore > now:
		// Judged when the importer's JWT arrives, and not again once it
		// becomes valid: the import stays out until the next version.
		return fmt.Sprintf("the activation token of %s %q is not valid before %s: the server would leave the import out; %s", im.Type, im.Subject, rfc3339(act.NotBefore), fix)
	case act.Expires != 0 && act.Expires <= now:
		return fmt.Sprintf("the activation token of %s %q expired at %s: the server would leave the import out; %s", im.Type, im.Subject, rfc3339(act.Expires), fix)
	case export.Revocations.IsRevoked(act.Subject, time.Unix(act.IssuedAt, 0)):
		// The server revokes the activations of the account issued up
		// to the revocation's time: a new one issued after it is
		// taken, one issued before a time still to come is not.
		until := revokedUntil(export.Revocations, act.Subject)
		what := fmt.Sprintf("the activation token of %s %q (issued %s) is revoked by the export of account %s, which revokes this account's activations issued up to %s: the server would leave the import out; ", im.Type, im.Subject, rfc3339(act.IssuedAt), exporter, rfc3339(until))
		if until >= now {
			return what + "the exporter must lift the revocation (an update of its \"exports\") first"
		}
		return what + fix + " (issued after the revocation), or the exporter lifts the revocation"
	}
	return ""
}

// revokedUntil is the latest time up to which revocations revoke the
// activations of account sub: its own entry's or every account's ("*").
func revokedUntil(revocations jwt.RevocationList, sub string) int64 {
	return max(revocations[sub], revocations[jwt.All])
}

// rfc3339 formats Unix seconds as the errors give times.
func rfc3339(sec int64) string {
	return time.Unix(sec, 0).UTC().Format(time.RFC3339)
}

// activationSigners are the accounts whose signing keys may sign the
// activations of imports: the exporters the imports name, by key or by a
// managed account's name (one the store does not know is left to
// setImports to refuse). A change that signs such an activation holds their signing locks shared (lockSigning) from its read
// of the exporter's keys until it is done: an exporter's rotation whose
// push fails puts the account back without its new key, and one with
// revoke_old removes the old key; an activation signed meanwhile with
// either is one the server refuses, the import left out for good while
// its change answered success. An import given with its token counts
// too: it is checked against the exporter's exports and signing keys
// (checkActivation) as one signed here is, and an exporter's update of
// exports, delete or rotation with revoke_old, which takes the lock
// exclusively, lists the imports it cuts only once it is stored.
func (s *Service) activationSigners(ctx context.Context, imports jwt.Imports) []string {
	var keys []string
	for _, im := range imports {
		if im == nil {
			continue
		}
		ref := strings.TrimSpace(im.Account)
		switch {
		case nkeys.IsValidPublicAccountKey(ref):
			keys = append(keys, ref)
		case ref != "" && !nkeys.IsValidPublicKey(ref):
			if a, err := s.store.AccountByName(ctx, ref); err == nil {
				keys = append(keys, a.PublicKey)
			}
		}
	}
	return keys
}

// exporter finds the account an import names: a managed account by name or
// key (with its signing key, to sign activations), or any other account by
// key, read from the servers. A deleted managed account is refused
// (ErrInvalid), though the servers may still hold its disabled version.
func (s *Service) exporter(ctx context.Context, ref string) (string, *jwt.AccountClaims, nkeys.KeyPair, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return "", nil, nil, fmt.Errorf("%w: \"account\" is required: the exporting account's name or public key", ErrInvalid)
	}
	if !nkeys.IsValidPublicAccountKey(ref) && nkeys.IsValidPublicKey(ref) {
		// No name is a key (checkName): it would be looked up as one and
		// refused as "no account named U...".
		return "", nil, nil, fmt.Errorf("%w: \"account\" is a %s public key (%s); give the exporting account's name or public key (A...)", ErrInvalid, keyKind(ref), ref)
	}
	var a Account
	var err error
	if nkeys.IsValidPublicAccountKey(ref) {
		a, err = s.store.Account(ctx, ref)
	} else {
		a, err = s.store.AccountByName(ctx, ref)
	}
	switch {
	case err == nil && a.Live():
		st, err := s.state(a)
		if err != nil {
			return "", nil, nil, err
		}
		return a.PublicKey, st.claims, st.signers[""], nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return "", nil, nil, err
	case err == nil:
		// A tombstone: its disabled version may still be on the servers
		// (allow_delete off, or a DELETE not sent yet), exports and
		// all, but an import of it would depend on an account that is
		// gone.
		return "", nil, nil, fmt.Errorf("%w: account %q (%s) was deleted", ErrInvalid, a.Name, a.PublicKey)
	case !nkeys.IsValidPublicAccountKey(ref):
		return "", nil, nil, fmt.Errorf("%w: no account named %q", ErrInvalid, ref)
	}
	// Every server's copy: the first to answer may hold none (it was
	// down when the account was pushed) or an older version than one
	// that disabled it.
	copies, err := s.resolver.LookupAll(ctx, ref)
	if err != nil {
		return "", nil, nil, fmt.Errorf("look up account %s: %w", ref, err)
	}
	token, claims, err := NewestCopy(ref, copies)
	if err != nil {
		return "", nil, nil, err
	}
	if token == "" {
		// LookupAll answers with the servers that answered: one down
		// (or slow) may be the one that holds it (pushed while the
		// others were down; they sync every few minutes). Refused 400,
		// an outage told the caller the account does not exist.
		full := 0
		for _, sv := range s.resolver.Servers() {
			if !sv.Cache {
				full++
			}
		}
		if missing := full - len(copies); missing > 0 {
			return "", nil, nil, fmt.Errorf("%w: no server that answered knows account %s, but %d of the %d servers did not answer (down or slow) and may hold it; retry once they are up", ErrTimeout, ref, missing, full)
		}
		return "", nil, nil, fmt.Errorf("%w: no server knows account %s", ErrInvalid, ref)
	}
	if disabled(claims) {
		// A deleted account's disabled version, which the servers keep
		// for good with allow_delete off, after its tombstone here was
		// dropped: an import of it would depend on an account that is
		// gone.
		return "", nil, nil, fmt.Errorf("%w: account %s is disabled on the servers (no connections, every user revoked): a deleted account", ErrInvalid, ref)
	}
	return ref, claims, nil, nil
}

// sameTerms tells whether two exports serve an import alike: equal but
// for their names, subjects and descriptions, which the server does not
// judge an import by.
func sameTerms(x, y *jwt.Export) bool {
	a, b := *x, *y
	for _, e := range []*jwt.Export{&a, &b} {
		e.Name, e.Subject, e.Advertise, e.Info = "", "", false, jwt.Info{}
	}
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}
