package provision_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// playServer makes player a server named name on the bus: it answers the
// pings, answers the LOOKUP of each account in copies with that copy, and
// records the JWTs pushed to it.
func playServer(t *testing.T, player *nats.Conn, name string, copies map[string]string) func() []string {
	t.Helper()
	id := fmt.Sprintf("NPLAYER%sFIRSTANSWER", name)
	if _, err := player.Subscribe(resolver.SubjectServerPing, func(m *nats.Msg) {
		_ = m.Respond(fmt.Appendf(nil, `{"name":%q,"host":"127.0.0.1","id":%q}`, name, id))
	}); err != nil {
		t.Fatal(err)
	}
	for pub, token := range copies {
		if _, err := player.Subscribe(fmt.Sprintf("$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP", pub), func(m *nats.Msg) {
			_ = m.Respond([]byte(token))
		}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var pushed []string
	if _, err := player.Subscribe(resolver.SubjectClaimsUpdate, func(m *nats.Msg) {
		mu.Lock()
		pushed = append(pushed, string(m.Data))
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := player.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), pushed...)
	}
}

// TestEnsureSelfExportBuildsOnTheNewestCopy: the real server holds an
// older version of the service's own account, without the self-service
// export (it was down when the newer one was pushed); zz-newer holds the
// newer one, with the export and a description. EnsureSelfExport must
// judge the newest copy, which has the export, and bring it to the real
// server: built on the first answer (the older), it signed that anew and
// pushed it to every server, replacing the newer version and losing its
// description.
func TestEnsureSelfExportBuildsOnTheNewestCopy(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	ctx := context.Background()
	pub := env.Init.ServiceAccount
	base := newDomain(t, env, nil)
	cur := lookupAll(t, base.rc, pub)
	if len(cur) != 1 || cur[0] == "" {
		t.Fatalf("precondition: the server's copies of the service account: %q", cur)
	}
	older := mustClaims(t, cur[0])
	older.Exports = nil
	older.Description = "older"
	olderJWT, err := older.Encode(base.op.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := base.rc.Update(ctx, olderJWT); err != nil {
		t.Fatal(err)
	}
	base.stop()
	time.Sleep(1100 * time.Millisecond) // the newer version's iat is a second later
	newer := mustClaims(t, olderJWT)
	newer.Exports.Add(api.SelfExport(""))
	newer.Description = "newer"
	newerJWT, err := newer.Encode(base.op.Signer)
	if err != nil {
		t.Fatal(err)
	}

	player := env.Connect(t, playerCreds(t, env.Init, "player"))
	pushed := playServer(t, player, "zz-newer", map[string]string{pub: newerJWT})
	d := newDomain(t, env, nil, func(c *provision.Config) { c.ServiceAccount = pub })
	if s := d.rc.Servers(); len(s) != 2 {
		t.Fatalf("Servers() = %+v, want the real server and zz-newer", s)
	}
	if err := d.svc.EnsureSelfExport(ctx); err != nil {
		t.Fatal(err)
	}
	for _, token := range pushed() {
		if c := mustClaims(t, token); c.Subject == pub && c.Description != "newer" {
			t.Errorf("EnsureSelfExport pushed a version built on the older copy (description %q): it replaces the newer one on every server", c.Description)
		}
	}
	// No reconciler pushes the service's own account: the real server
	// must get the newest copy, with the export, now.
	for _, cp := range lookupAll(t, d.rc, pub) {
		if cp != newerJWT {
			t.Errorf("a server holds the service account described %q, want the newest copy", mustClaims(t, cp).Description)
		}
	}
}

// TestImportOfAnAccountOneServerHolds: an import names an account the
// service does not store, which zz-holder holds and the real server does
// not (it was down when the account was pushed). The real server's empty
// answer comes first: taken as the only one, the import was refused "no
// server knows account", though a server does.
func TestImportOfAnAccountOneServerHolds(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	ctx := context.Background()
	base := newDomain(t, env, nil)
	base.stop()
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	ext, _ := kp.PublicKey()
	kp.Wipe()
	ec := jwt.NewAccountClaims(ext)
	ec.Name = "external"
	ec.Exports = jwt.Exports{{Name: "svc", Subject: "svc.>", Type: jwt.Service}}
	extJWT, err := ec.Encode(base.op.Signer)
	if err != nil {
		t.Fatal(err)
	}
	player := env.Connect(t, playerCreds(t, env.Init, "player"))
	playServer(t, player, "zz-holder", map[string]string{ext: extJWT})
	d := newDomain(t, env, nil)
	defer d.stop()
	if s := d.rc.Servers(); len(s) != 2 {
		t.Fatalf("Servers() = %+v, want the real server and zz-holder", s)
	}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "importer",
		Imports: jwt.Imports{{Name: "svc", Subject: "svc.>", Account: ext, Type: jwt.Service}},
	}); err != nil {
		t.Fatalf("import of an account zz-holder holds: %v", err)
	}
}
