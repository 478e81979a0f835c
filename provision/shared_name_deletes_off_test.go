package provision_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/resolver"
)

// TestDeletesOffUnderASharedNameCountNothingFailed: the servers do not
// allow deletes (allow_delete false), and two of them answer under one
// server_name. A pass sends a finished delete's DELETE again as a probe;
// every server refuses it because deletes are off, the refusal of the one
// the client does not take for the name's instance marked as such by the
// resolver client. deletesRefused split the joined refusals at "; ",
// which that mark held too: its tail was read as a refusal for another
// reason, every pass counted the account failed, and deletes were no
// longer taken for off.
func TestDeletesOffUnderASharedNameCountNothingFailed(t *testing.T) {
	t.Parallel()
	env, d, pub := deletedWithoutDelete(t)
	defer d.stop()
	ctx := context.Background()
	const name = "dup"
	for _, f := range []struct {
		id    string
		delay time.Duration
	}{{"NDUPOFFINSTANCEA", 0}, {"NDUPOFFINSTANCEB", 300 * time.Millisecond}} {
		fakeServer(t, env, name, f.id, f.delay, map[string]string{
			// It holds the disabled version, as the real server does.
			resolver.SubjectClaimsList:   fmt.Sprintf(`"data":[%q]`, pub),
			resolver.SubjectClaimsUpdate: `"data":{"code":200,"message":"jwt updated"}`,
			// As nats-server with allow_delete false answers.
			resolver.SubjectClaimsDelete: `"error":{"code":500,"description":"delete accounts request by X failed - delete must be enabled in server config"}`,
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := d.rc.Discover(ctx); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(d.rc.Servers(), func(s provision.Server) bool { return s.Name == name && s.Up && s.Shared }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resolver client does not take %s for shared: %+v", name, d.rc.Servers())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 2 {
		rep, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Failed != 0 {
			t.Fatalf("pass %d: %d accounts failed; every server refused the DELETE because deletes are off: %+v", i+1, rep.Failed, rep)
		}
	}
}
