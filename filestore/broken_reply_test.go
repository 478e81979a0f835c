package filestore_test

import (
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/provtest"
)

// TestBrokenStoreReplySaysRestart: once a journal write failed and no new
// snapshot could be written, the store refuses every change until the
// instance restarts (README: only a store problem needs a restart). The
// caller was answered 503 "retry", which never helps; the 503 now says an
// operator must restart the instance, and still names none of the
// store's paths.
func TestBrokenStoreReplySaysRestart(t *testing.T) {
	breakJournal := filestore.BreakJournal(t)
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	if rep := provtest.Request(t, admin, "prov.account.create", `{"name":"a"}`); rep.Code != 0 {
		t.Fatalf("create a: %d %s", rep.Code, rep.Description)
	}
	breakJournal()
	provtest.Request(t, admin, "prov.account.create", `{"name":"b"}`)
	if svc.Store.Broken() == nil {
		t.Fatal("the store is not broken after every flush failed")
	}
	rep := provtest.Request(t, admin, "prov.account.create", `{"name":"c"}`)
	if rep.Code != api.CodeUnavailable {
		t.Fatalf("create on a broken store: %d %q, want 503", rep.Code, rep.Description)
	}
	if !strings.Contains(rep.Description, "restart") || strings.Contains(rep.Description, "retry") {
		t.Errorf("create on a broken store: %q, want it to say the instance must be restarted, not to retry", rep.Description)
	}
	if strings.Contains(rep.Description, "journal") || strings.Contains(rep.Description, env.Config.StoreDir) {
		t.Errorf("the reply shows the store's error: %q", rep.Description)
	}
}
