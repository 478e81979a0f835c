package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
)

// cutImportsRoom is what the imports a change cuts off may take of its
// reply, shared with the servers' answers (replyServersRoom): those come
// first, they are the ones to act on; what does not fit is counted.
const cutImportsRoom = replyServersRoom

// What a reply's cut_imports_incomplete says when its cut_imports may lack
// imports the change cut off; the log has the error.
const (
	cutImportsLagging = "listed from this instance's copy of the store, which could not be brought up to the change: imports other instances stored just before it may be missing"
	cutImportsUnread  = "the accounts could not be read: imports this change cut off are not listed"
	// cutImportsUnreadable takes the count of account records that cannot
	// be read.
	cutImportsUnreadable = "%d account record(s) cannot be read (damaged, or sealed with a seal key this instance lacks: prov.status's damage or problem names them): imports of those accounts this change cut off are not listed"
)

// findExport returns the export of claims an import of im's type and
// subject is served by, as the server matches them: the import's subject
// equal to the export's or held by it (heldBy).
func findExport(claims *jwt.AccountClaims, im *jwt.Import) *jwt.Export {
	for _, e := range claims.Exports {
		if e != nil && e.Type == im.Type && heldBy(im.Subject, e.Subject) {
			return e
		}
	}
	return nil
}

// heldBy tells whether the server serves an import of subject by an export
// of export's subject (checkStreamExportApproved, isSubsetMatch): equal, or
// every subject the import names is one the export names. The JWT
// library's IsContainedIn lets an import's ">" match an export's "*" (a.>
// of a.*), which the server does not: it leaves such an import out of the
// account and takes the JWT.
func heldBy(subject, export jwt.Subject) bool {
	if subject == export {
		return true
	}
	tokens, test := strings.Split(string(subject), "."), strings.Split(string(export), ".")
	for i, t2 := range test {
		if i >= len(tokens) || t2 == "" {
			return false
		}
		if t2 == ">" {
			return true
		}
		t1 := tokens[i]
		if t1 == "" || t1 == ">" || (t1 == "*" && t2 != "*") {
			return false
		}
		if t2 != "*" && t1 != t2 {
			return false
		}
	}
	return len(tokens) == len(test)
}

// otherExport returns an export of claims other than export that serves an
// import of im's type and subject too, as findExport matches them, on
// other terms (sameTerms); nil when there is none.
func otherExport(claims *jwt.AccountClaims, im *jwt.Import, export *jwt.Export) *jwt.Export {
	for _, e := range claims.Exports {
		if e != nil && e != export && e.Type == im.Type && heldBy(im.Subject, e.Subject) && !sameTerms(e, export) {
			return e
		}
	}
	return nil
}

// subjectsOverlap tells whether some subject is held by both x and y:
// token by token equal or either a wildcard, up to either's ">".
func subjectsOverlap(x, y jwt.Subject) bool {
	a, b := strings.Split(string(x), "."), strings.Split(string(y), ".")
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] == ">" || b[i] == ">" {
			return true
		}
		if a[i] != b[i] && a[i] != "*" && b[i] != "*" {
			return false
		}
	}
	return len(a) == len(b)
}

// served tells whether the server would keep importer's import im of
// exporter, whose claims are given (nil: the account is gone or disabled),
// in the importing account: an export matches it, an account_token_position
// export is imported on a subject holding importer's key, and a private
// one's activation token is one the server takes (checkActivation).
func served(importer string, im *jwt.Import, exporter string, claims *jwt.AccountClaims) bool {
	if claims == nil {
		return false
	}
	export := findExport(claims, im)
	if export == nil {
		return false
	}
	if pos := export.AccountTokenPosition; pos > 0 {
		tokens := strings.Split(string(im.Subject), ".")
		return uint(len(tokens)) >= pos && tokens[pos-1] == importer
	}
	if !export.TokenReq {
		return true
	}
	if im.Token == "" {
		return false
	}
	return checkActivation(0, im, exporter, claims, export, false) == nil
}

// cutImports lists the imports of live managed accounts that exporter's
// change from before to after (nil: deleted) cuts off: served before, not
// after. The exporter decides what it exports, as in NATS itself, so the
// change is made; its reply names what it cut, which the server would drop
// from the importing accounts without a word. room is what is left of the
// reply beside the servers' answers; the rest is counted. It is read from
// the store after the change, and is the caller's to act on: a read that
// fails is logged and lists nothing; records that cannot be read are left
// out, and said to be. rev is the revision the change was
// stored at: a store shared by instances is read once its copy holds every
// account stored before it (importsServed checks the other way round).
// When the list may lack imports (that wait failed, or the read did), the
// third value says why, for the reply's cut_imports_incomplete: an empty
// list alone reads as "nothing was cut off".
func (s *Service) cutImports(ctx context.Context, exporter string, rev uint64, before, after *jwt.AccountClaims, room int) ([]api.CutImport, int, string) {
	if before == nil || len(before.Exports) == 0 {
		return nil, 0, ""
	}
	incomplete := ""
	if f, ok := s.store.(usersFollower); ok {
		// The signing locks that order an importer's change and this
		// one are this instance's own: an import another instance
		// stored just before this change was not in this copy yet, and
		// neither reply named it.
		wctx, cancel := context.WithTimeout(ctx, usersAgainWait)
		err := f.SeenThrough(wctx, rev)
		cancel()
		if err != nil {
			s.log.Warn("the imports of other accounts this change cut off are listed from a copy of the store that may lack another instance's latest changes", "account", exporter, "error", err)
			incomplete = cutImportsLagging
		}
	}
	accounts, err := s.store.Accounts(ctx)
	if unread, ok := errors.AsType[*UnreadableError](err); ok {
		// One damaged record, which every instance shares, listed no cut
		// import at all: the others' are listed, and the reply says whose
		// are not (prov.status's damage or problem names them).
		incomplete = joinIncomplete(incomplete, fmt.Sprintf(cutImportsUnreadable, len(unread.Accounts)))
	} else if err != nil {
		s.log.Warn("the imports of other accounts this change cut off could not be listed", "account", exporter, "error", err)
		return nil, 0, cutImportsUnread
	}
	var cut []api.CutImport
	for _, b := range accounts {
		if b.PublicKey == exporter || !b.Live() {
			continue
		}
		claims, err := s.claimsOf(b)
		if err != nil {
			continue
		}
		for _, im := range claims.Imports {
			if im == nil || im.Account != exporter || im.Name == selfImportName {
				continue
			}
			if served(b.PublicKey, im, exporter, before) && !served(b.PublicKey, im, exporter, after) {
				cut = append(cut, api.CutImport{Account: b.PublicKey, AccountName: b.Name, Name: im.Name, Subject: string(im.Subject), Type: im.Type.String()})
			}
		}
	}
	if len(cut) == 0 {
		return nil, 0, incomplete
	}
	slices.SortFunc(cut, func(x, y api.CutImport) int {
		return strings.Compare(x.AccountName+"\x00"+x.Account+"\x00"+x.Subject, y.AccountName+"\x00"+y.Account+"\x00"+y.Subject)
	})
	s.log.Warn("the change cut off imports of other accounts (the server drops them from those accounts)", "account", exporter, "imports", len(cut), "first_importer", cut[0].Account, "first_subject", cut[0].Subject)
	kept := cut[:0]
	if incomplete != "" {
		room -= len(incomplete) + len(`,"cut_imports_incomplete":""`)
	}
	for _, c := range cut {
		line, _ := json.Marshal(c)
		if len(line)+1 > room {
			break
		}
		room -= len(line) + 1
		kept = append(kept, c)
	}
	return kept, len(cut) - len(kept), incomplete
}

// claimsOf returns the decoded claims of a stored account: the cached
// state's when it holds this version, else decoded without caching (and
// without the signing keys a state loads).
func (s *Service) claimsOf(a Account) (*jwt.AccountClaims, error) {
	if v, ok := s.cache.Load(a.PublicKey); ok {
		if st := v.(*state); st.jwt == a.JWT {
			return st.claims, nil
		}
	}
	return decodeAccount(a.JWT)
}

// serversRoomLeft is what the servers' answers of a reply leave of
// cutImportsRoom.
func serversRoomLeft(replies []api.ServerReply) int {
	room := cutImportsRoom
	for _, r := range replies {
		line, _ := json.Marshal(r)
		room -= len(line) + 1
	}
	return max(room, 0)
}

// importsServed checks, once an importer's change is stored on a store
// shared by instances and this instance's copy holds every account stored
// before it (usersAgain), that each import of a managed account is still
// served by that account: the signing locks that order an exporter's
// change and an importer's are each instance's own, and an exporter's
// delete or change of exports another instance stored meanwhile was not in
// this copy when the import was checked. Stored after it, the import was
// answered success though the server drops it, and the exporter's reply
// did not name it (cutImports).
func (s *Service) importsServed(ctx context.Context, a *Account, c *jwt.AccountClaims) error {
	for _, im := range c.Imports {
		if im == nil || im.Name == selfImportName {
			continue
		}
		exp, err := s.store.Account(ctx, im.Account)
		switch {
		case errors.Is(err, ErrNotFound):
			continue // not a managed account
		case err != nil:
			return err
		case !exp.Live():
			return fmt.Errorf("%w: import %q: account %q (%s) was deleted", ErrInvalid, im.Subject, exp.Name, exp.PublicKey)
		}
		claims, err := s.claimsOf(exp)
		if err != nil {
			return err
		}
		if !served(a.PublicKey, im, exp.PublicKey, claims) {
			if key := removedActivationKey(im, exp.PublicKey, claims); key != "" {
				// The exports did not change: another instance's
				// rotation with revoke_old removed the key that signed
				// the activation. Told "no longer exports it", its
				// caller looked for a change of exports.
				return fmt.Errorf("%w: import %q: its activation token was signed by %s, a signing key account %q (%s) no longer lists (removed meanwhile by a rotation with \"revoke_old\"): the server would leave the import out; send the import again without \"token\", and the service signs a new activation", ErrInvalid, im.Subject, key, exp.Name, exp.PublicKey)
			}
			if export := findExport(claims, im); export != nil && export.TokenReq && export.AccountTokenPosition == 0 && im.Token != "" {
				// The export is there; its activation is not one the
				// server takes: revoked by the export (another
				// instance stored the revocation meanwhile), or
				// expired. Told "no longer exports it", its caller
				// looked for a change of exports.
				if fault := activationFault(im, exp.PublicKey, claims, export, true); fault != "" {
					return fmt.Errorf("%w: import %q of account %q: %s", ErrInvalid, im.Subject, exp.Name, fault)
				}
			}
			return fmt.Errorf("%w: import %q: account %q (%s) no longer exports it to this account", ErrInvalid, im.Subject, exp.Name, exp.PublicKey)
		}
	}
	return nil
}

// removedActivationKey returns the signing key that signed im's activation
// token when exporter (its claims given) exports im with a token required
// and no longer lists that key; "" otherwise.
func removedActivationKey(im *jwt.Import, exporter string, claims *jwt.AccountClaims) string {
	export := findExport(claims, im)
	if export == nil || !export.TokenReq || export.AccountTokenPosition > 0 || im.Token == "" {
		return ""
	}
	act, err := jwt.DecodeActivationClaims(im.Token)
	if err != nil || act.IssuerAccount != exporter || claims.SigningKeys.Contains(act.Issuer) {
		return ""
	}
	return act.Issuer
}

// importsAgain is importsServed for a new account, once stored at rev: on a
// store shared by instances, after this instance's copy holds every
// account stored before it. An exporter's delete or change of exports that
// another instance stored before the create was not in the copy the
// create's imports were checked in, and neither reply named the import the
// server drops. Nothing to do on a store of one instance.
func (s *Service) importsAgain(ctx context.Context, rev uint64, a *Account, c *jwt.AccountClaims) error {
	f, ok := s.store.(usersFollower)
	if !ok {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, usersAgainWait)
	err := f.SeenThrough(wctx, rev)
	cancel()
	if err != nil {
		return fmt.Errorf("%w: the exporters of the new account's imports could not be checked again for what other instances stored meanwhile; nothing was created: %w", ErrUnavailable, err)
	}
	return s.importsServed(ctx, a, c)
}

// joinIncomplete joins the reasons a list of cut imports may lack some.
func joinIncomplete(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
