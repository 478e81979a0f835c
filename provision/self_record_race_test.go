package provision_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// pauseAdd is a KV store whose next AddUser, once armed, waits until
// released before it writes: an instance paused (a GC pause, SIGSTOP)
// between a self-service create's check of the settings and its record.
// With after set, it waits once the record is stored instead.
type pauseAdd struct {
	*kvstore.Store
	after   bool
	arm     atomic.Bool
	held    chan struct{}
	release chan struct{}
}

func (p *pauseAdd) AddUser(ctx context.Context, u provision.User, durable bool) error {
	if !p.after && p.arm.CompareAndSwap(true, false) {
		p.held <- struct{}{}
		<-p.release
	}
	err := p.Store.AddUser(ctx, u, durable)
	if p.after && err == nil && p.arm.CompareAndSwap(true, false) {
		p.held <- struct{}{}
		<-p.release
	}
	return err
}

// pausedPair opens instances a and b of env, each with tune, a's store a
// pauseAdd that holds its next AddUser once armed (see hold).
func pausedPair(t *testing.T, env *provtest.Env, tune func(*provision.Config)) (a, b *provision.Service, p *pauseAdd) {
	t.Helper()
	p = &pauseAdd{held: make(chan struct{}), release: make(chan struct{})}
	a, _ = kvDomainOf(t, env, "a", nil, func(c *provision.Config) {
		tune(c)
		p.Store = c.Store.(*kvstore.Store)
		c.Store = p
	})
	b, _ = kvDomainOf(t, env, "b", nil, tune)
	return a, b, p
}

// hold arms p, runs create on its own and waits until it reaches its
// record; the channel gives create's error once let goes on.
func (p *pauseAdd) hold(t *testing.T, create func() error) <-chan error {
	t.Helper()
	p.arm.Store(true)
	created := make(chan error, 1)
	go func() { created <- create() }()
	select {
	case <-p.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the create never reached its record")
	}
	return created
}

// let releases the create hold holds and returns its error, failing the
// test if it does not end within wait.
func (p *pauseAdd) let(t *testing.T, created <-chan error, wait time.Duration) error {
	t.Helper()
	close(p.release)
	select {
	case err := <-created:
		return err
	case <-time.After(wait):
		t.Fatal("the create did not end")
		return nil
	}
}

// TestSelfCreateRecordedAfterUpdateOnAnotherInstance: a self-service create
// on instance a that checked the settings on the bucket's latest version,
// and wrote its user's record only after instance b's account.update
// (self-service off, or the quota lowered) was stored and had replied,
// issued its user under the settings the update replaced. The create reads
// the settings again once its record is stored, and refuses (403), its
// user revoked, when they no longer allow it.
func TestSelfCreateRecordedAfterUpdateOnAnotherInstance(t *testing.T) {
	t.Parallel()
	one := 1
	off := false
	for _, tc := range []struct {
		name   string
		update api.UpdateAccountRequest
		before int // self-service users issued before the race
	}{
		{"self_service off", api.UpdateAccountRequest{SelfService: &off}, 0},
		{"quota lowered", api.UpdateAccountRequest{SelfServiceQuota: &one}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := provtest.JetStreamDeployment(t, bootstrap.Options{})
			a, b, p := pausedPair(t, env, func(c *provision.Config) { c.ServiceAccount = env.Init.ServiceAccount })
			ctx := context.Background()
			acc, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": {}}, SelfService: true, SelfServiceQuota: 2})
			if err != nil {
				t.Fatal(err)
			}
			pub := acc.Account.PublicKey
			tenant := provision.Tenant{Account: pub}
			for i := range tc.before {
				if _, err := a.SelfCreateUser(ctx, tenant, api.SelfCreateUserRequest{Name: "early" + string(rune('0'+i)), Role: "device", PublicKey: newUserKey()}); err != nil {
					t.Fatal(err)
				}
			}
			created := p.hold(t, func() error {
				_, err := a.SelfCreateUser(ctx, tenant, api.SelfCreateUserRequest{Name: "late", Role: "device", PublicKey: newUserKey()})
				return err
			})
			u := tc.update
			u.Account = pub
			if _, err := b.UpdateAccount(ctx, u); err != nil {
				t.Fatal(err)
			}
			if err := p.let(t, created, 10*time.Second); !errors.Is(err, provision.ErrForbidden) {
				t.Errorf("a self-service create on instance a, recorded after instance b's account.update (%s) replied: %v, want refused (403)", tc.name, err)
			}
			users, err := a.ListUsers(ctx, api.ListUsersRequest{Account: pub})
			if err != nil {
				t.Fatal(err)
			}
			for _, us := range users.Users {
				if us.Name == "late" && !us.Revoked {
					t.Errorf("the refused create left user %q active (it holds its name and takes quota)", us.Name)
				}
			}
		})
	}
}

// TestSelfCreateRecordedAfterRoleChangeOnAnotherInstance: a self-service
// create on instance a of a user named "*", checked against its role's
// template that did not use the name, wrote its record only after
// instance b's change of the role to "telemetry.{{name()}}.>" was stored
// and had replied: b's check of the role's active users did not see it,
// and the tenant's user got "telemetry.*.>", every device's subjects. So
// with a change to bearer_token, whose JWT travelled on the tenant's
// inbox. The create checks its user against the role's template again
// once its record is stored, on the bucket's latest version, and refuses
// it, its user revoked.
func TestSelfCreateRecordedAfterRoleChangeOnAnotherInstance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		user string
		role *api.Role
	}{
		{"name into subjects", "*", &api.Role{Pub: &jwt.Permission{Allow: []string{"telemetry.{{name()}}.>"}}}},
		{"bearer_token", "d1", &api.Role{Pub: &jwt.Permission{Allow: []string{"telemetry.>"}}, BearerToken: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := provtest.JetStreamDeployment(t, bootstrap.Options{})
			a, b, p := pausedPair(t, env, func(c *provision.Config) { c.ServiceAccount = env.Init.ServiceAccount })
			ctx := context.Background()
			device := &api.Role{Pub: &jwt.Permission{Allow: []string{"telemetry.>"}}}
			acc, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": device}, SelfService: true})
			if err != nil {
				t.Fatal(err)
			}
			pub := acc.Account.PublicKey
			created := p.hold(t, func() error {
				_, err := a.SelfCreateUser(ctx, provision.Tenant{Account: pub}, api.SelfCreateUserRequest{Name: tc.user, Role: "device", PublicKey: newUserKey()})
				return err
			})
			if _, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Roles: map[string]*api.Role{"device": tc.role}}); err != nil {
				t.Fatal(err)
			}
			if err := p.let(t, created, 10*time.Second); err == nil {
				t.Errorf("a self-service create of %q on instance a, recorded after instance b changed its role (%s), issued its user", tc.user, tc.name)
			}
			users, err := a.ListUsers(ctx, api.ListUsersRequest{Account: pub})
			if err != nil {
				t.Fatal(err)
			}
			for _, us := range users.Users {
				if us.Name == tc.user && !us.Revoked {
					t.Errorf("the refused create left user %q active under the new template", us.Name)
				}
			}
		})
	}
}

// TestAdminCreateRecordedAfterRoleChangeOnAnotherInstance: an admin
// user.create on instance a of a user named "*" (one token of any
// subject), checked against its role's template that did not use the
// name, wrote its record only after instance b's change of the role to
// "telemetry.{{name()}}.>" was stored and had replied: b's check of the
// role's active users did not see it (its mirror did not hold the record
// yet), and the user got "telemetry.*.>", every device's subjects; so did
// a user tagged "site:*" from "telemetry.{{tag(site)}}.>". With durable
// user records and without (the record of such a user is written before
// the reply then: it must be stored to be checked again).
func TestAdminCreateRecordedAfterRoleChangeOnAnotherInstance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, user string
		tags       []string
		template   string
		durable    bool
	}{
		{"name", "*", nil, "telemetry.{{name()}}.>", false},
		{"name durable_user_records", "*", nil, "telemetry.{{name()}}.>", true},
		{"tag", "d1", []string{"site:*"}, "telemetry.{{tag(site)}}.>", false},
	} {
		durable := tc.durable
		t.Run(tc.name, func(t *testing.T) {
			env := provtest.JetStreamDeployment(t, bootstrap.Options{})
			a, b, p := pausedPair(t, env, func(c *provision.Config) { c.DurableUserRecords = durable })
			ctx := context.Background()
			device := &api.Role{Pub: &jwt.Permission{Allow: []string{"telemetry.>"}}}
			acc, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": device}})
			if err != nil {
				t.Fatal(err)
			}
			pub := acc.Account.PublicKey
			created := p.hold(t, func() error {
				_, err := a.CreateUser(ctx, api.CreateUserRequest{Account: pub, Name: tc.user, Role: "device", Tags: tc.tags})
				return err
			})
			if _, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Roles: map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: []string{tc.template}}}}}); err != nil {
				t.Fatal(err)
			}
			if err := p.let(t, created, 20*time.Second); err == nil {
				t.Errorf("an admin create of %q (tags %q) on instance a, recorded after instance b changed its role to %q, issued its user: it gets \"telemetry.*.>\"", tc.user, tc.tags, tc.template)
			}
			users, err := a.ListUsers(ctx, api.ListUsersRequest{Account: pub})
			if err != nil {
				t.Fatal(err)
			}
			for _, us := range users.Users {
				if us.Name == tc.user && !us.Revoked {
					t.Errorf("the create left user %q active under the new template", us.Name)
				}
			}
		})
	}
}

// staleUsers is a KV store whose user reads, once armed, return what its
// mirror held at that moment: an instance whose mirror lags the records
// another instance wrote. The lag ends at the store's barrier
// (SeenThrough), which waits for the mirror to hold every record stored
// before a revision.
type staleUsers struct {
	*kvstore.Store
	mu     sync.Mutex
	frozen map[string][]provision.User // account -> its users when armed
	// stalled: SeenThrough waits until its context ends, as the store's
	// does while its watcher does not move.
	stalled atomic.Bool
}

func (s *staleUsers) freeze(ctx context.Context, account string) error {
	users, err := s.Store.Users(ctx, account)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frozen = map[string][]provision.User{account: users}
	return err
}

func (s *staleUsers) Users(ctx context.Context, account string) ([]provision.User, error) {
	s.mu.Lock()
	users, ok := s.frozen[account]
	s.mu.Unlock()
	if ok {
		return slices.Clone(users), nil
	}
	return s.Store.Users(ctx, account)
}

func (s *staleUsers) SeenThrough(ctx context.Context, rev uint64) error {
	if s.stalled.Load() {
		// A watcher that does not move: the wait ends with its context.
		<-ctx.Done()
		return fmt.Errorf("%w: the watcher is stalled: %w", provision.ErrUnavailable, context.Cause(ctx))
	}
	s.mu.Lock()
	s.frozen = nil
	s.mu.Unlock()
	return s.Store.SeenThrough(ctx, rev)
}

// TestRoleChangeWhileUsersCannotBeCheckedAgain: when the store cannot say
// that its reads of users hold every record stored before the change's
// version (its watcher stalled, as in a failover), whether a user another
// instance issued meanwhile fits cannot be told: the change fails as
// unavailable (503, retry), and nothing of it stays, in the store or on
// a server. It answers once, after the one wait for the watcher: the
// put-back is not checked by waiting for it again (the 503 came after
// twice usersAgainWait, and a short request_timeout heard 504 instead).
func TestRoleChangeWhileUsersCannotBeCheckedAgain(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	b, st := staleInstance(t, env, "b")
	ctx := context.Background()
	device := &api.Role{Pub: &jwt.Permission{Allow: []string{"telemetry.>"}}}
	acc, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": device}})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	st.stalled.Store(true)
	start := time.Now()
	_, err = b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Roles: map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: []string{"telemetry.{{name()}}.>"}}}}})
	took := time.Since(start)
	if !errors.Is(err, provision.ErrUnavailable) {
		t.Errorf("a role change whose users cannot be checked again: %v, want unavailable (503)", err)
	}
	// One wait of 5 s (usersAgainWait) and the put-back; waiting again
	// for the same watcher took 10 s.
	if took > 8*time.Second {
		t.Errorf("a role change whose users cannot be checked again answered after %v, want one wait for the store's watcher (about 5s), not two", took.Round(100*time.Millisecond))
	}
	st.stalled.Store(false)
	deviceTemplateIs(t, env, b, pub, device.Pub.Allow)
}

// TestRoleChangeStoredAfterAnotherInstanceCheckedItsUser: the other
// order of the race above. Instance a issued a user named "*" (or tagged
// "site:*") under a role whose template did not use the name, and its
// check once the record was stored read the version before instance b's
// change of the template to "telemetry.{{name()}}.>"; b's check of the
// role's active users read its mirror, which did not hold a's record yet.
// Neither saw the other, and the server gave the user "telemetry.*.>",
// every device's subjects. b checks the role's users again once its
// version is stored and its mirror holds every record stored before it:
// the change is refused as it would have been had b seen the user, and
// the account is put back.
func TestRoleChangeStoredAfterAnotherInstanceCheckedItsUser(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, user string
		tags       []string
		template   string
	}{
		{"name", "*", nil, "telemetry.{{name()}}.>"},
		{"tag", "d1", []string{"site:*"}, "telemetry.{{tag(site)}}.>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := provtest.JetStreamDeployment(t, bootstrap.Options{})
			a, _ := kvDomainOf(t, env, "a", nil)
			b, st := staleInstance(t, env, "b")
			ctx := context.Background()
			device := &api.Role{Pub: &jwt.Permission{Allow: []string{"telemetry.>"}}}
			acc, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": device}})
			if err != nil {
				t.Fatal(err)
			}
			pub := acc.Account.PublicKey
			if err := st.freeze(ctx, pub); err != nil {
				t.Fatal(err)
			}
			rep, err := a.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: tc.user, Tags: tc.tags, Role: "device"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Roles: map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: []string{tc.template}}}}})
			if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(fmt.Sprint(err), rep.User.PublicKey) {
				t.Errorf("instance b's change of the role to %q, with user %q of instance a active: %v, want refused (400) naming the user", tc.template, tc.user, err)
			}
			deviceTemplateIs(t, env, a, pub, device.Pub.Allow)
		})
	}
}

// staleInstance is a service on env's KV store as instance name whose
// store is wrapped in a staleUsers.
func staleInstance(t *testing.T, env *provtest.Env, name string) (*provision.Service, *staleUsers) {
	t.Helper()
	st := &staleUsers{}
	svc, _ := kvDomainOf(t, env, name, nil, func(c *provision.Config) {
		st.Store = c.Store.(*kvstore.Store)
		c.Store = st
	})
	return svc, st
}

// deviceTemplateIs fails the test when the "device" role's publish
// template, in the store (read through svc) or on a server, is not want.
func deviceTemplateIs(t *testing.T, env *provtest.Env, svc *provision.Service, pub string, want []string) {
	t.Helper()
	got, err := svc.GetAccount(context.Background(), api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	where := map[string][]string{"the store": {got.Account.JWT}, "a server": lookupAll(t, rawResolver(t, env), pub)}
	for place, tokens := range where {
		for _, token := range tokens {
			sc, _ := jwt.DecodeAccountClaims(token)
			for _, sk := range sc.SigningKeys {
				if us, ok := sk.(*jwt.UserScope); ok && us.Role == "device" && !slices.Equal(us.Template.Pub.Allow, want) {
					t.Errorf("%s holds the role's template %v, want %v", place, us.Template.Pub.Allow, want)
				}
			}
		}
	}
}

// TestPutBackRevokesUsersIssuedUnderTheRefusedVersion: the put-back of a
// refused role change is checked against the users another instance
// issued while the change stood. Instance b changes the role's template
// from "telemetry.{{name()}}.>" to "telemetry.{{tag(site)}}.>"; a user of
// instance a tagged "site:*" refuses it once b's mirror holds that user,
// and b puts the account back. In the moment between, instance a issues
// a user named "*" tagged "site:b": it fits the refused version, which
// does not use the name, and a checks it against that version, the
// latest then. Under the version put back it would get "telemetry.*.>",
// every device's subjects: it is revoked before the put-back is pushed.
func TestPutBackRevokesUsersIssuedUnderTheRefusedVersion(t *testing.T) {
	t.Parallel()
	r := newPutBackRace(t, "telemetry.{{name()}}.>")
	var wide *api.CreateUserReply
	r.st.arm(r.pub, r.issueWide(&wide))
	err := r.changeToBySite()
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(fmt.Sprint(err), r.first) {
		t.Fatalf("instance b's change of the role with user %s active: %v, want refused (400) naming it", r.first, err)
	}
	if wide == nil {
		t.Fatal("the put-back was not written, or instance a's user was not issued before it")
	}
	deviceTemplateIs(t, r.env, r.a, r.pub, []string{"telemetry.{{name()}}.>"})
	r.revokedEverywhere(wide.User.PublicKey, true, "named \"*\", it gets telemetry.*.>")
	r.revokedEverywhere(r.first, false, "it fits the version put back")
}

// TestPutBackRevocationLostToAnotherInstanceIsMadeAgain: as above, with
// instance a's update stored on top of the put-back before the version
// that revokes the user: that version lost its compare-and-set, and the
// user stayed active under the put-back's template (logged only). It is
// made again on top of a's version.
func TestPutBackRevocationLostToAnotherInstanceIsMadeAgain(t *testing.T) {
	t.Parallel()
	r := newPutBackRace(t, "telemetry.{{name()}}.>")
	var wide *api.CreateUserReply
	r.st.arm(r.pub, r.issueWide(&wide), func() {
		if _, err := r.a.UpdateAccount(r.ctx, api.UpdateAccountRequest{Account: r.pub, Description: ptr("changed on a")}); err != nil {
			t.Errorf("instance a's update on top of the put-back: %v", err)
		}
	})
	if err := r.changeToBySite(); !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("instance b's change of the role with user %s active: %v, want refused (400)", r.first, err)
	}
	if wide == nil {
		t.Fatal("instance a's user was not issued before the put-back")
	}
	for place, token := range r.everywhere() {
		if c, err := jwt.DecodeAccountClaims(token); err != nil || c.Description != "changed on a" {
			t.Fatalf("%s does not hold instance a's version on top of the put-back (%v)", place, err)
		}
	}
	r.revokedEverywhere(wide.User.PublicKey, true, "named \"*\", it gets telemetry.*.>")
}

// TestPutBackLostToAnotherInstanceRevokesWhatDoesNotFit: a role change
// refused once stored (a user of instance a tagged "site:*" does not fit
// "telemetry.{{tag(site)}}.>") cannot be put back when instance a stored
// a version on top of it first: the change stands (504, in doubt), and
// with it the user it was refused for would get "telemetry.*.>". The
// users are checked against the version that stands, and that user is
// revoked.
func TestPutBackLostToAnotherInstanceRevokesWhatDoesNotFit(t *testing.T) {
	t.Parallel()
	r := newPutBackRace(t, "telemetry.>")
	r.st.arm(r.pub, func() {
		if _, err := r.a.UpdateAccount(r.ctx, api.UpdateAccountRequest{Account: r.pub, Description: ptr("changed on a")}); err != nil {
			t.Errorf("instance a's update while b puts the account back: %v", err)
		}
	})
	if err := r.changeToBySite(); !errors.Is(err, provision.ErrInDoubt) {
		t.Fatalf("instance b's change of the role, its put-back lost to instance a's version: %v, want in doubt (504)", err)
	}
	for place, token := range r.everywhere() {
		c, err := jwt.DecodeAccountClaims(token)
		if err != nil {
			t.Fatal(err)
		}
		if templateOf(token, "device") != bySite || c.Description != "changed on a" {
			t.Fatalf("%s holds template %q, description %q: want instance a's version on top of b's change", place, templateOf(token, "device"), c.Description)
		}
	}
	r.revokedEverywhere(r.first, true, "tagged \"site:*\", it gets telemetry.*.> under "+bySite)
}

// bySite is the template the put-back races change the role "device" to.
const bySite = "telemetry.{{tag(site)}}.>"

// putBackRace is an account "acme" whose role "device" has a template,
// made on instance a, with a user of it (first, tagged "site:*", which
// does not fit bySite) that instance b's reads of users do not hold until
// b's change is stored; b's store runs a hook before a put-back.
type putBackRace struct {
	ctx   context.Context
	env   *provtest.Env
	a, b  *provision.Service
	st    *putBackHook
	pub   string
	first string
	t     *testing.T
}

func newPutBackRace(t *testing.T, template string) *putBackRace {
	t.Helper()
	r := &putBackRace{ctx: context.Background(), env: provtest.JetStreamDeployment(t, bootstrap.Options{}), st: &putBackHook{staleUsers: &staleUsers{}}}
	r.a, _ = kvDomainOf(t, r.env, "a", nil)
	r.b, _ = kvDomainOf(t, r.env, "b", nil, func(c *provision.Config) {
		r.st.Store = c.Store.(*kvstore.Store)
		c.Store = r.st
	})
	acc, err := r.a.CreateAccount(r.ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: []string{template}}}}})
	if err != nil {
		t.Fatal(err)
	}
	r.pub = acc.Account.PublicKey
	if err := r.st.freeze(r.ctx, r.pub); err != nil {
		t.Fatal(err)
	}
	first, err := r.a.CreateUser(r.ctx, api.CreateUserRequest{Account: "acme", Name: "d1", Tags: []string{"site:*"}, Role: "device"})
	if err != nil {
		t.Fatal(err)
	}
	r.first = first.User.PublicKey
	r.t = t
	return r
}

// issueUnder issues, on instance a, a user named "*" tagged "site:b" once
// a's reads hold the role's template.
func (r *putBackRace) issueUnder(template string) (*api.CreateUserReply, error) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		got, err := r.a.GetAccount(r.ctx, api.AccountRequest{Account: r.pub})
		if err == nil && templateOf(got.Account.JWT, "device") == template {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r.a.CreateUser(r.ctx, api.CreateUserRequest{Account: "acme", Name: "*", Tags: []string{"site:b"}, Role: "device"})
}

// issueWide is a hook that issues the user of issueUnder under bySite, a
// version that does not use the name, into *wide.
func (r *putBackRace) issueWide(wide **api.CreateUserReply) func() {
	return func() {
		var err error
		*wide, err = r.issueUnder(bySite)
		if err != nil {
			r.t.Errorf("instance a's user named \"*\" under the version that does not use the name: %v", err)
		}
	}
}

// changeToBySite changes the role's template to bySite on instance b.
func (r *putBackRace) changeToBySite() error {
	_, err := r.b.UpdateAccount(r.ctx, api.UpdateAccountRequest{Account: r.pub, Roles: map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: []string{bySite}}}}})
	return err
}

// everywhere is the account's JWT in the store and on each server, by
// where it is.
func (r *putBackRace) everywhere() map[string]string {
	r.t.Helper()
	got, err := r.a.GetAccount(r.ctx, api.AccountRequest{Account: r.pub})
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]string{"the store": got.Account.JWT}
	for i, token := range lookupAll(r.t, rawResolver(r.t, r.env), r.pub) {
		out[fmt.Sprintf("server answer %d", i+1)] = token
	}
	return out
}

// revokedEverywhere fails the test when user is (want false) or is not
// (want true) revoked in the account in the store or on a server; why
// says what its state would mean.
func (r *putBackRace) revokedEverywhere(user string, want bool, why string) {
	r.t.Helper()
	for place, token := range r.everywhere() {
		c, err := jwt.DecodeAccountClaims(token)
		if err != nil {
			r.t.Fatal(err)
		}
		if got := c.Revocations.IsRevoked(user, time.Unix(c.IssuedAt, 0)); got != want {
			r.t.Errorf("%s: user %s revoked %v, want %v: %s", place, user, got, want, why)
		}
	}
}

// putBackHook is a staleUsers that runs each hook once, before the
// write of a version of account it is armed for: the first hook before
// the second write since arm (the put-back of the first), the next before
// the third (the version on top of the put-back), and so on.
type putBackHook struct {
	*staleUsers
	mu      sync.Mutex
	account string
	writes  int
	hooks   []func()
}

func (p *putBackHook) arm(account string, hooks ...func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.account, p.writes, p.hooks = account, 0, hooks
}

func (p *putBackHook) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	p.mu.Lock()
	var hook func()
	if a.PublicKey == p.account {
		if p.writes++; p.writes >= 2 && p.writes-2 < len(p.hooks) {
			hook = p.hooks[p.writes-2]
		}
	}
	p.mu.Unlock()
	if hook != nil {
		hook()
	}
	return p.staleUsers.UpdateAccount(ctx, a, rev)
}

// templateOf is the first publish subject of role's template in an
// account JWT, "" when it has none.
func templateOf(token, role string) string {
	c, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		return ""
	}
	for _, sk := range c.SigningKeys {
		if us, ok := sk.(*jwt.UserScope); ok && us.Role == role && len(us.Template.Pub.Allow) > 0 {
			return us.Template.Pub.Allow[0]
		}
	}
	return ""
}
