package provision

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
)

// AccountSettings are what the service keeps of an account besides its JWT
// and keys: whether its tenants may issue their own users.
type AccountSettings struct {
	// SelfService lets the account's users issue users of the account in
	// its roles.
	SelfService bool `json:"self_service,omitempty"`
	// Quota caps the active users issued through self-service; 0: none.
	Quota int `json:"quota,omitempty"`
	// CallerRole, when set, lets only users of that role self-serve.
	CallerRole string `json:"caller_role,omitempty"`
}

var roleName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// checkRoleName refuses a role name that is not a short token.
func checkRoleName(name string) error {
	if !roleName.MatchString(name) {
		return fmt.Errorf("%w: role %q: a role name is 1 to 64 letters, digits, - or _", ErrInvalid, name)
	}
	return nil
}

// template turns a role of the wire into the template of its scoped key.
func template(name string, r *api.Role) (jwt.UserPermissionLimits, error) {
	var t jwt.UserPermissionLimits
	t.NatsLimits = jwt.NatsLimits{Subs: jwt.NoLimit, Data: jwt.NoLimit, Payload: jwt.NoLimit}
	if r.Pub != nil {
		t.Pub = *r.Pub
	}
	if r.Sub != nil {
		t.Sub = *r.Sub
	}
	t.Resp = r.Resp
	if err := mergeUserLimits(&t.Limits, r.Limits); err != nil {
		return t, fmt.Errorf("role %q: %w", name, err)
	}
	t.BearerToken = r.BearerToken
	if err := setConnectionTypes(&t.AllowedConnectionTypes, r.AllowedConnectionTypes); err != nil {
		return t, fmt.Errorf("role %q: %w", name, err)
	}
	// The template is held to what a user's own permissions and limits
	// are (issue validates those as user claims): the server applies it
	// to every user the key signs, and a subject, CIDR, time range or
	// time zone it cannot read locks every such user out.
	if err := checkTemplateFuncs(t.Permissions); err != nil {
		return t, fmt.Errorf("%w: role %q: %w", ErrInvalid, name, err)
	}
	if err := checkTemplateSubjects(t.Permissions); err != nil {
		return t, fmt.Errorf("%w: role %q: %w", ErrInvalid, name, err)
	}
	vr := jwt.CreateValidationResults()
	checked := untemplated(t.Permissions)
	checked.Validate(vr)
	t.Limits.Validate(vr)
	if errs := vr.Errors(); len(errs) > 0 {
		return t, fmt.Errorf("%w: role %q: %w", ErrInvalid, name, errors.Join(errs...))
	}
	return t, nil
}

// checkTemplateFuncs refuses a template function the server does not
// know: it refuses every user whose key's template holds one ("template
// operation ... is not defined"), so a typo ({{nmae()}}) locked out every
// user of the role. It reads the functions as the server does
// (processUserPermissionsTemplate): any case, trimmed of spaces.
func checkTemplateFuncs(p jwt.Permissions) error {
	for _, list := range []jwt.StringList{p.Pub.Allow, p.Pub.Deny, p.Sub.Allow, p.Sub.Deny} {
		for _, subj := range list {
			for _, m := range mustache.FindAllStringSubmatch(subj, -1) {
				raw := strings.TrimSpace(m[1])
				op := strings.ToLower(raw)
				switch {
				case op == "name()", op == "subject()", op == "account-name()", op == "account-subject()":
				case (strings.HasPrefix(op, "tag(") || strings.HasPrefix(op, "account-tag(")) && strings.HasSuffix(op, ")"):
					// The server knows the function in any case but cuts
					// the tag's name out after a lowercase "tag(" (or
					// "account-tag("): {{Tag(site)}} looks for tags
					// "tag(site:...", which no user has, so a deny of it
					// refuses every user of the role and an allow of it
					// is dropped.
					if !strings.HasPrefix(raw, "tag(") && !strings.HasPrefix(raw, "account-tag(") {
						return fmt.Errorf("subject %q: the server reads the tag's name only after a lowercase %q: write {{%s}}", subj, op[:strings.IndexByte(op, '(')+1], op[:strings.IndexByte(op, '(')+1]+raw[strings.IndexByte(raw, '(')+1:])
					}
					// It trims the spaces around the function, not
					// those inside its parentheses: {{tag( site )}}
					// looks for tags " site :...", which no tag is
					// (tags are trimmed), so an allow of it is dropped
					// for every user.
					fn, tag := raw[:strings.IndexByte(raw, '(')+1], raw[strings.IndexByte(raw, '(')+1:len(raw)-1]
					if tag != strings.TrimSpace(tag) {
						return fmt.Errorf("subject %q: the server reads the tag's name between the parentheses as it is, spaces included, and no tag would match it: write {{%s%s)}}", subj, fn, strings.TrimSpace(tag))
					}
				default:
					return fmt.Errorf("subject %q: the server knows no template function %q (it has name(), subject(), account-name(), account-subject(), tag(x), account-tag(x)) and would refuse every user of the role", subj, strings.TrimSpace(m[1]))
				}
			}
		}
	}
	return nil
}

// checkTemplateSubjects refuses a subject the server cannot read in a
// list of the template that holds a template function: the server then
// checks every subject of that list as it makes it (IsValidSubject after
// processUserPermissionsTemplate), those without a function too, and one
// it cannot read is dropped from an allow list and, in a deny list, fails
// every user of the role at connect. Such are a queue group entry
// ("jobs.> workers", which the server reads without queue groups there)
// and what jwt takes but the server does not ("a.>.b"). In a list without
// template functions the server keeps the list as it is.
func checkTemplateSubjects(p jwt.Permissions) error {
	for _, list := range []struct {
		what string
		l    jwt.StringList
	}{{"pub allow", p.Pub.Allow}, {"pub deny", p.Pub.Deny}, {"sub allow", p.Sub.Allow}, {"sub deny", p.Sub.Deny}} {
		if !slices.ContainsFunc(list.l, mustache.MatchString) {
			continue
		}
		for _, subj := range list.l {
			// Spaces the server allows inside the braces name no queue.
			plain := mustache.ReplaceAllString(subj, "t")
			switch {
			case strings.ContainsAny(plain, "\t\n\f\r "):
				return fmt.Errorf("%s %q names a queue group or holds white space in a list that holds a template function ({{...}}): the server reads every subject of such a list without queue groups, and would drop it from an allow list or refuse every user of the role for it in a deny list; put it in a role without template functions in that list", list.what, subj)
			case !validSubject(plain):
				return fmt.Errorf("%s %q is not a subject the server reads (an empty token, or a token after '>'), in a list that holds a template function ({{...}}): the server checks every subject of such a list, and would drop it from an allow list or refuse every user of the role for it in a deny list", list.what, subj)
			}
		}
	}
	return nil
}

// validSubject tells whether the server takes subj as a subject
// (IsValidSubject, white space apart): no empty token, nothing after a
// '>' token.
func validSubject(subj string) bool {
	tokens := strings.Split(subj, ".")
	for i, tok := range tokens {
		if tok == "" || (tok == ">" && i < len(tokens)-1) {
			return false
		}
	}
	return true
}

// templateFunc is one of the server's template functions in a subject
// ({{name()}}, {{tag(x)}}, ...), which it lets hold spaces: "{{ name() }}".
var templateFunc = regexp.MustCompile(`\{\{[^{}]*\}\}`)

// untemplated returns permissions whose subjects have each template
// function replaced by one token, for jwt's subject checks, which refuse
// the spaces the server allows inside the braces.
func untemplated(p jwt.Permissions) jwt.Permissions {
	strip := func(l jwt.StringList) jwt.StringList {
		out := make(jwt.StringList, len(l))
		for i, subj := range l {
			out[i] = templateFunc.ReplaceAllString(subj, "t")
		}
		return out
	}
	p.Pub.Allow, p.Pub.Deny = strip(p.Pub.Allow), strip(p.Pub.Deny)
	p.Sub.Allow, p.Sub.Deny = strip(p.Sub.Allow), strip(p.Sub.Deny)
	return p
}

// setRoles applies the roles of a request to an account: a role given
// replaces the template of the role of that name (keeping its key) or adds
// one with a new key; a role given as nil is removed with its key. It
// checks everything before it changes anything. newKey makes a signing key
// (an account key) and returns its seed and public key.
func setRoles(a *Account, c *jwt.AccountClaims, roles map[string]*api.Role, newKey func() (Seed, string, error)) error {
	if len(roles) == 0 {
		return nil
	}
	names := make([]string, 0, len(roles))
	templates := map[string]jwt.UserPermissionLimits{}
	for name, r := range roles {
		if err := checkRoleName(name); err != nil {
			return err
		}
		names = append(names, name)
		if r == nil {
			if roleKey(a, name) == "" {
				return fmt.Errorf("%w: \"roles\": the account has no role %q to remove", ErrInvalid, name)
			}
			continue
		}
		t, err := template(name, r)
		if err != nil {
			return err
		}
		scope := jwt.NewUserScope()
		// The key is checked when it is made; any account key stands in.
		scope.Key, scope.Role, scope.Template = a.PublicKey, name, t
		vr := jwt.CreateValidationResults()
		scope.Validate(vr)
		if errs := vr.Errors(); len(errs) > 0 {
			return fmt.Errorf("%w: role %q: %v", ErrInvalid, name, errs)
		}
		templates[name] = t
	}
	sort.Strings(names)
	keys := slices.Clone(a.SigningKeys)
	for _, name := range names {
		pub := roleKey(a, name)
		t, keep := templates[name]
		switch {
		case !keep:
			// The role goes with every key it had, retired ones too.
			for _, sk := range keys {
				if sk.Role == name {
					if p, err := seedPublic(sk.Seed); err == nil {
						c.SigningKeys.Remove(p)
					}
				}
			}
			keys = slices.DeleteFunc(keys, func(sk SigningKey) bool { return sk.Role == name })
			continue
		case pub == "":
			seed, p, err := newKey()
			if err != nil {
				return fmt.Errorf("create role %q signing key: %w", name, err)
			}
			pub = p
			keys = append(keys, SigningKey{Seed: seed, Role: name})
		}
		// Every key of the role gets the template, retired ones too: the
		// server applies a key's own template to the users it signed, so
		// tightening a role must reach the users of its retired keys.
		rolePubs := []string{pub}
		for _, sk := range keys {
			if sk.Role == name && sk.Retired {
				if p, err := seedPublic(sk.Seed); err == nil {
					rolePubs = append(rolePubs, p)
				}
			}
		}
		for _, p := range rolePubs {
			scope := jwt.NewUserScope()
			scope.Key, scope.Role, scope.Template = p, name, t
			c.SigningKeys.AddScopedSigner(scope)
		}
	}
	a.SigningKeys = keys
	return nil
}

// checkBearer refuses an account that disallows bearer tokens while one of
// its roles gives them: the server refuses every user such a role signs,
// as user.create refuses a bearer user of that account.
func checkBearer(c *jwt.AccountClaims) error {
	if !c.Limits.DisallowBearer {
		return nil
	}
	var bad []string
	for _, sc := range c.SigningKeys {
		if us, ok := sc.(*jwt.UserScope); ok && us.Template.BearerToken && !slices.Contains(bad, us.Role) {
			bad = append(bad, us.Role)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("%w: role %q gives \"bearer_token\" but the account's limits set \"disallow_bearer\": the server would refuse every user of the role; change one of them", ErrInvalid, bad[0])
}

// checkAccountTags refuses an account whose roles' templates the server
// would turn into subjects other than the role meant, for every user of
// the role:
//   - a deny subject holding {{account-tag(x)}} while the account has no
//     tag "x:...": the server fails every such user ("generated invalid
//     subject") rather than leave the deny out;
//   - {{account-tag(x)}} or {{account-name()}} in any subject while the
//     value the server puts there (the tag's value, the account's name)
//     is not one subject token: "*" or ">" makes a wildcard of the subject
//     (wider than the role), "a.b" reaches into other subjects, and white
//     space makes an invalid subject (an allow silently dropped, a deny
//     that fails every user);
//   - more subjects in one list than the server makes
//     (checkTagExpansions) with the account's tags alone: a user's own
//     tags ({{tag(x)}}) only add to them, so the server would refuse
//     every user of the role, whose creates were refused telling the
//     caller to give the user fewer tags.
//
// Checked on the whole claims, so that an update removing or changing the
// tag is refused as a role needing it is.
func checkAccountTags(c *jwt.AccountClaims) error {
	roles := make([]*jwt.UserScope, 0, len(c.SigningKeys))
	for _, sc := range c.SigningKeys {
		if us, ok := sc.(*jwt.UserScope); ok {
			roles = append(roles, us)
		}
	}
	slices.SortFunc(roles, func(a, b *jwt.UserScope) int { return strings.Compare(a.Role, b.Role) })
	for _, us := range roles {
		p := us.Template.Permissions
		if subj, ok := templateUses(p, "account-name()"); ok && !oneToken(c.Name) {
			return fmt.Errorf("%w: role %q puts the account's name into subjects (%q), and %q is not one subject token (no '.', '*', '>', spaces or {{...}}): the server would give every user of the role other subjects than the role's", ErrInvalid, us.Role, subj, c.Name)
		}
		if err := checkTagValues(p, "account-tag(", c.Tags, us.Role, "an account tag", "the server would refuse every user of the role; change one of them"); err != nil {
			return err
		}
		if err := checkTagExpansions(p, nil, c.Tags, us.Role, "with the account's tags alone, for every user of the role", "give the account fewer values of those tags, or change the role"); err != nil {
			return err
		}
	}
	return nil
}

// templateUses tells whether a subject of the template holds the server
// function fn (such as "account-name()"), read as the server reads it (any
// case, trimmed), and returns the first such subject.
func templateUses(p jwt.Permissions, fn string) (string, bool) {
	for _, list := range []jwt.StringList{p.Pub.Allow, p.Pub.Deny, p.Sub.Allow, p.Sub.Deny} {
		for _, subj := range list {
			for _, m := range mustache.FindAllStringSubmatch(subj, -1) {
				if strings.EqualFold(strings.TrimSpace(m[1]), fn) {
					return subj, true
				}
			}
		}
	}
	return "", false
}

// checkTagValues checks the tags a template's subjects put in through the
// server's fn ("tag(" for the user's tags, "account-tag(" for the
// account's) against tags, as the server matches them (the name
// lowercased, a prefix "name:"): a deny subject needs at least one such
// tag, and every value of one must be one subject token. what names the
// tags, fail says what the server would do.
func checkTagValues(p jwt.Permissions, fn string, tags jwt.TagList, role, what, fail string) error {
	lists := []struct {
		deny bool
		l    jwt.StringList
	}{{false, p.Pub.Allow}, {true, p.Pub.Deny}, {false, p.Sub.Allow}, {true, p.Sub.Deny}}
	for _, list := range lists {
		for _, subj := range list.l {
			for _, m := range mustache.FindAllStringSubmatch(subj, -1) {
				op := strings.TrimSpace(m[1])
				if len(op) < len(fn) || !strings.EqualFold(op[:len(fn)], fn) || !strings.HasSuffix(op, ")") {
					continue
				}
				tag := strings.TrimSuffix(op[len(fn):], ")")
				prefix := strings.ToLower(tag) + ":"
				found := false
				for _, t := range tags {
					v, ok := strings.CutPrefix(t, prefix)
					if !ok {
						continue
					}
					found = true
					if !oneToken(v) {
						return fmt.Errorf("%w: role %q puts %s %q into subjects (%q), and its value %q is not one subject token (no '.', '*', '>', spaces or {{...}}): the server would give the user other subjects than the role's", ErrInvalid, role, what, tag, subj, v)
					}
				}
				if list.deny && !found {
					return fmt.Errorf("%w: role %q denies %q, which needs %s %q (\"tags\":[\"%s<value>\"]): %s", ErrInvalid, role, subj, what, tag, prefix, fail)
				}
			}
		}
	}
	return nil
}

// oneToken tells whether v, put into a subject by a template, is one
// literal subject token. It holds no template function either: the
// server replaces the functions of a subject one after the other, each
// everywhere in it, so a value "{{account-name()}}" put in by an earlier
// one is replaced in its turn (a user so named got the subjects of the
// user named as the account).
func oneToken(v string) bool {
	return v != "" && !strings.ContainsAny(v, ".*>") && !strings.ContainsFunc(v, unicode.IsSpace) && !mustache.MatchString(v)
}

// roleKey returns the public key of the account's scoped key for a role,
// "" when it has none.
func roleKey(a *Account, role string) string {
	for _, sk := range a.SigningKeys {
		if sk.Role == role && role != "" && !sk.Retired {
			pub, err := seedPublic(sk.Seed)
			if err == nil {
				return pub
			}
		}
	}
	return ""
}

// roleKeys returns the public keys of every key of a role, retired ones
// included: users they signed are still the role's.
func roleKeys(a *Account, role string) []string {
	var out []string
	for _, sk := range a.SigningKeys {
		if sk.Role == role && role != "" {
			if pub, err := seedPublic(sk.Seed); err == nil {
				out = append(out, pub)
			}
		}
	}
	return out
}

// roles lists the role names of an account, sorted.
func roles(a Account) []string {
	var out []string
	for _, sk := range a.SigningKeys {
		if sk.Role != "" && !sk.Retired {
			out = append(out, sk.Role)
		}
	}
	sort.Strings(out)
	return out
}

// mustache finds template functions in a subject as nats-server does
// (its mustacheRE): "{{", anything but '}', "}}".
var mustache = regexp.MustCompile(`\{\{([^}]+)\}\}`)

// usesName tells whether a subject of a scoped key's template holds the
// server's {{name()}}, which it replaces with the name in the user's JWT.
// It reads the function as the server does: any case, and the function
// trimmed with strings.TrimSpace, which trims every Unicode space (a
// no-break space, a vertical tab), not only regexp's \s.
func usesName(subj string) bool {
	for _, m := range mustache.FindAllStringSubmatch(subj, -1) {
		if strings.EqualFold(strings.TrimSpace(m[1]), "name()") {
			return true
		}
	}
	return false
}

// checkTemplateName refuses the name of a user a scoped key signs when the
// key's template puts the name into subjects and the name is not one
// literal subject token: "*" or ">" would make "telemetry.{{name()}}.>" a
// wildcard over every user's subjects, "a.b" would reach into the subjects
// of a user named "a", white space makes an invalid subject, and a name
// holding a template function is replaced in its turn (oneToken). The name
// is the caller's choice (a tenant's, through self-service), so without
// this a user could be issued more than its role gives.
func checkTemplateName(claims *jwt.AccountClaims, signer, role, name string) error {
	scope, ok := claims.SigningKeys[signer].(*jwt.UserScope)
	if !ok || scope == nil {
		return nil
	}
	p := scope.Template.Permissions
	uses := false
	for _, list := range []jwt.StringList{p.Pub.Allow, p.Pub.Deny, p.Sub.Allow, p.Sub.Deny} {
		for _, subj := range list {
			if usesName(subj) {
				uses = true
			}
		}
	}
	if !uses {
		return nil
	}
	if !oneToken(name) {
		return fmt.Errorf("%w: \"name\" %q: role %q puts the user's name into subjects ({{name()}}), so the name must be one subject token, without '.', '*', '>', spaces or {{...}}", ErrInvalid, name, role)
	}
	return nil
}

// checkTemplateTags refuses a user the server would refuse, or give other
// subjects than its role's, for its tags (checkTagValues with {{tag(x)}}):
// a deny subject of the template of the key that signs it holding
// {{tag(x)}} when the user has no tag "x:...", or a value of such a tag
// that is not one subject token ("dev:*" would make a wildcard of it), or
// more subjects in one list than the server makes (checkTagExpansions).
func checkTemplateTags(claims *jwt.AccountClaims, signer, role string, tags jwt.TagList) error {
	scope, ok := claims.SigningKeys[signer].(*jwt.UserScope)
	if !ok || scope == nil {
		return nil
	}
	if err := checkTagValues(scope.Template.Permissions, "tag(", tags, role, "a tag on the user", "the server refuses a user without it"); err != nil {
		return err
	}
	return checkTagExpansions(scope.Template.Permissions, tags, claims.Tags, role, userTagsFor, userTagsFix)
}

// What checkTagExpansions says of a user's count.
const (
	userTagsFor = "for the user's tags"
	userTagsFix = "give the user fewer values of those tags"
)

// maxTagExpansions is the most subjects the server makes of one list of a
// template for a user (maxPermTemplateSubjectExpansions).
const maxTagExpansions = 4096

// checkTagExpansions refuses a user for whom the server would make more
// subjects of one list of the template than it allows: a subject holding
// {{tag(x)}} (or {{account-tag(x)}}) becomes one subject for every
// combination of the values of its tags, and past maxTagExpansions in a
// list the server refuses the user at every connect. It counts as
// processUserPermissionsTemplate does: a tag with no value in an allow
// list makes no subject. For and fix say, in the error, whose tags make
// them and what to do.
func checkTagExpansions(p jwt.Permissions, userTags, accountTags jwt.TagList, role, forWhom, fix string) error {
	count := func(tags jwt.TagList, name string) int {
		prefix := strings.ToLower(name) + ":"
		n := 0
		for _, t := range tags {
			if strings.HasPrefix(t, prefix) {
				n++
			}
		}
		return n
	}
	for _, list := range []jwt.StringList{p.Sub.Allow, p.Sub.Deny, p.Pub.Allow, p.Pub.Deny} {
		emitted := 0
		for _, subj := range list {
			exp, tagged, none := 1, false, false
			for _, m := range mustache.FindAllStringSubmatch(subj, -1) {
				op := strings.TrimSpace(m[1])
				var n int
				switch lower := strings.ToLower(op); {
				case strings.HasPrefix(lower, "tag(") && strings.HasSuffix(op, ")"):
					n = count(userTags, strings.TrimSuffix(op[len("tag("):], ")"))
				case strings.HasPrefix(lower, "account-tag(") && strings.HasSuffix(op, ")"):
					n = count(accountTags, strings.TrimSuffix(op[len("account-tag("):], ")"))
				default:
					continue
				}
				tagged = true
				if n == 0 {
					none, n = true, 1 // an invalid subject, dropped
				}
				if exp > maxTagExpansions/n {
					return fmt.Errorf("%w: role %q makes more than %d subjects of %q %s (one for every combination of the values of its tags), which the server refuses at every connect: %s", ErrInvalid, role, maxTagExpansions, subj, forWhom, fix)
				}
				exp *= n
			}
			switch {
			case !tagged:
				emitted++
			case emitted > maxTagExpansions-exp:
				return fmt.Errorf("%w: role %q makes more than %d subjects of one list (%q among them) %s (one for every combination of the values of its tags), which the server refuses at every connect: %s", ErrInvalid, role, maxTagExpansions, subj, forWhom, fix)
			case !none:
				emitted += exp
			}
		}
	}
	return nil
}

// checkRoleUsers refuses a change of role templates that would give one
// of the role's active users other subjects than its role's. The server
// applies a scoped key's template as it is now to every user the key
// signed, also those issued before the change, checked against the old
// template only:
//   - a device named "*", issued while its role's template did not use
//     {{name()}}, would get "telemetry.*.>" from "telemetry.{{name()}}.>",
//     every other device's subjects;
//   - a user tagged "site:*" would get "site.*.>" from a new
//     "site.{{tag(site)}}.>", and one without a tag "site:..." would be
//     refused at its next connect by a deny subject holding it;
//   - a template that gives bearer_token makes the JWT of a self-service
//     user, which travelled on the tenant's inbox where other users of the
//     account may read it, connect without its seed.
//
// A user recorded before records held tags (TagsRecorded false) has tags
// nobody can check: for such a user, the role's subjects that hold
// {{tag(x)}} must stay as they were. a and c are the account and claims
// with the new templates, old the claims before.
func (s *Service) checkRoleUsers(ctx context.Context, a *Account, old, c *jwt.AccountClaims, changed map[string]*api.Role) error {
	var names []string
	for name, r := range changed {
		if r != nil {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	users, err := s.store.Users(ctx, a.PublicKey)
	if errors.Is(err, ErrNotFound) {
		return nil // a new account: no users yet
	}
	if err != nil {
		return err
	}
	for _, role := range names {
		keys := roleKeys(a, role)
		for _, u := range users {
			if u.Revoked || s.expiredEverywhere(u) || c.Revocations.IsRevoked(u.PublicKey, time.Unix(u.IssuedAt, 0)) {
				continue
			}
			signer := u.Signer
			if signer == "" && u.Role == role {
				signer = roleKey(a, role)
			}
			if !slices.Contains(keys, signer) {
				continue
			}
			if u.Name != "" {
				if err := checkTemplateName(c, signer, role, u.Name); err != nil {
					return fmt.Errorf("%w (active user %s of role %q is named %q: revoke it first)", err, u.PublicKey, role, u.Name)
				}
			}
			if u.TagsRecorded {
				if err := checkTemplateTags(c, signer, role, u.Tags); err != nil {
					return fmt.Errorf("%w (active user %s of role %q has tags %q: revoke it first)", err, u.PublicKey, role, u.Tags)
				}
			} else if !slices.Equal(tagSubjects(old, signer), tagSubjects(c, signer)) {
				return fmt.Errorf("%w: role %q: the change touches subjects that hold {{tag(x)}}, and active user %s was issued before this service recorded users' tags, so what the server would put there for it cannot be checked: revoke it first, or leave those subjects as they are", ErrInvalid, role, u.PublicKey)
			}
			// The template's bearer_token reaches the users signed before
			// it too: a self-service user's JWT travelled on the tenant's
			// inbox, where other users of the account may read it, and
			// would connect without its seed (why self-service refuses a
			// bearer role).
			if sc, ok := c.SigningKeys[signer].(*jwt.UserScope); ok && sc.Template.BearerToken && u.SelfService {
				return fmt.Errorf("%w: role %q would give \"bearer_token\" to active self-service user %s (%q), whose JWT travelled on the tenant's inbox, where other users of the account may read it, and would then connect without its seed: revoke it first", ErrInvalid, role, u.PublicKey, u.Name)
			}
		}
	}
	return nil
}

// expiredEverywhere reports whether u's JWT has expired on every server:
// RevocationMargin past its expiry on this clock, the room prune leaves
// for servers whose clocks run behind. Until then a server may still take
// it, under the account's templates as they are then, so the checks of a
// change count it as active.
func (s *Service) expiredEverywhere(u User) bool {
	return u.ExpiresAt != 0 && u.ExpiresAt < time.Now().Add(-s.cfg.RevocationMargin).Unix()
}

// tagSubjects lists, sorted and each with its list ("pub allow: ..."),
// the subjects of the template of signer's scope that put a user's tag
// into them ({{tag(x)}}).
func tagSubjects(c *jwt.AccountClaims, signer string) []string {
	scope, ok := c.SigningKeys[signer].(*jwt.UserScope)
	if !ok || scope == nil {
		return nil
	}
	p := scope.Template.Permissions
	var out []string
	for _, list := range []struct {
		what string
		l    jwt.StringList
	}{{"pub allow", p.Pub.Allow}, {"pub deny", p.Pub.Deny}, {"sub allow", p.Sub.Allow}, {"sub deny", p.Sub.Deny}} {
		for _, subj := range list.l {
			for _, m := range mustache.FindAllStringSubmatch(subj, -1) {
				op := strings.TrimSpace(m[1])
				if len(op) >= len("tag(") && strings.EqualFold(op[:len("tag(")], "tag(") {
					out = append(out, list.what+": "+subj)
					break
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// checkAccountTagUsers refuses a change of the account's tags that would
// cut off an active user of a role: the server puts the account's tags
// into {{account-tag(x)}} at every connect, so more values of one
// multiply the subjects it makes of the user's template (with the
// user's own tags, {{tag(y)}}) past what it allows (checkTagExpansions).
// A user refused so already before the change is left to its role's
// checks. For a user recorded before records held tags, whose tags
// nobody can check, more values of an account tag its template uses are
// refused when the template also holds {{tag(x)}}. a and c are the
// account and claims with the change, old the claims before.
func (s *Service) checkAccountTagUsers(ctx context.Context, a *Account, old, c *jwt.AccountClaims) error {
	if slices.Equal(old.Tags, c.Tags) {
		return nil
	}
	users, err := s.store.Users(ctx, a.PublicKey)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, u := range users {
		if u.Revoked || s.expiredEverywhere(u) || c.Revocations.IsRevoked(u.PublicKey, time.Unix(u.IssuedAt, 0)) {
			continue
		}
		signer := u.Signer
		if signer == "" && u.Role != "" {
			signer = roleKey(a, u.Role)
		}
		scope, ok := c.SigningKeys[signer].(*jwt.UserScope)
		if !ok || scope == nil {
			continue
		}
		p := scope.Template.Permissions
		// What the user got before the change: a user the server
		// refused already is not this change's doing.
		was := func(userTags jwt.TagList) error {
			if os, ok := old.SigningKeys[signer].(*jwt.UserScope); ok && os != nil {
				return checkTagExpansions(os.Template.Permissions, userTags, old.Tags, os.Role, userTagsFor, userTagsFix)
			}
			return nil
		}
		var userTags jwt.TagList
		if u.TagsRecorded {
			userTags = u.Tags
		}
		if err := checkTagExpansions(p, userTags, c.Tags, scope.Role, userTagsFor, userTagsFix); err != nil && was(userTags) == nil {
			return fmt.Errorf("%w (with the account's new tags, for active user %s of role %q, tags %q: revoke it first, or give the account fewer values of those tags)", err, u.PublicKey, scope.Role, u.Tags)
		}
		if !u.TagsRecorded && len(tagSubjects(c, signer)) > 0 {
			if tag, ok := moreAccountTagValues(p, old.Tags, c.Tags); ok {
				return fmt.Errorf("%w: role %q multiplies the values of account tag %q by the user's tags ({{tag(x)}}), and active user %s was issued before this service recorded users' tags, so whether the server would still take it with more values of %q cannot be checked: revoke it first, or leave the values of %q as they are", ErrInvalid, scope.Role, tag, u.PublicKey, tag, tag)
			}
		}
	}
	return nil
}

// moreAccountTagValues tells whether tags hold more values than old of an
// account tag a subject of p puts in ({{account-tag(x)}}), and which.
func moreAccountTagValues(p jwt.Permissions, old, tags jwt.TagList) (string, bool) {
	count := func(tags jwt.TagList, prefix string) int {
		n := 0
		for _, t := range tags {
			if strings.HasPrefix(t, prefix) {
				n++
			}
		}
		return n
	}
	for _, list := range []jwt.StringList{p.Pub.Allow, p.Pub.Deny, p.Sub.Allow, p.Sub.Deny} {
		for _, subj := range list {
			for _, m := range mustache.FindAllStringSubmatch(subj, -1) {
				op := strings.TrimSpace(m[1])
				if len(op) < len("account-tag(") || !strings.EqualFold(op[:len("account-tag(")], "account-tag(") || !strings.HasSuffix(op, ")") {
					continue
				}
				tag := strings.TrimSuffix(op[len("account-tag("):], ")")
				prefix := strings.ToLower(tag) + ":"
				if count(tags, prefix) > count(old, prefix) {
					return tag, true
				}
			}
		}
	}
	return "", false
}
