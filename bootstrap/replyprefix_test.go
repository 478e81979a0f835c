package bootstrap_test

import (
	"github.com/nats-io/jwt/v2"

	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provtest"
)

// The server answers a request that crosses a service import on a reply
// subject of its own in the exporting account: "_R_." (and "_GR_." through
// a gateway). Every account imports the system services ($SYS.REQ.USER.INFO,
// $SYS.REQ.ACCOUNT.PING.CONNZ, ...), so their answers to every account pass
// through _R_.> in the system account. With --prefix _R_ the provisioner's
// creds (subscribe prefix.>) read them and the admin's (publish prefix.>)
// may publish into them: init must refuse those prefixes, as it refuses $
// and _INBOX.
func TestInitRefusesTheServersReplyPrefixes(t *testing.T) {
	for _, prefix := range []string{"_R_", "_GR_", "_R_.prov"} {
		t.Run(prefix, func(t *testing.T) {
			res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), SubjectPrefix: prefix})
			if err != nil {
				if !strings.Contains(err.Error(), `"`+prefix+`"`) {
					t.Errorf("refused, but the error does not name the prefix: %v", err)
				}
				return
			}
			t.Errorf("Init took the subject prefix %q", prefix)
			if prefix != "_R_" {
				return
			}
			// What it lets the provisioner's creds see, on a real server.
			srv, err := natsembed.Start(res.ServerConf, natsembed.Options{Port: -1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Stop)
			env := &provtest.Env{Dir: res.Dir, Init: res, Server: srv}
			prov := env.Connect(t, res.ProvisionerCreds)
			sub, err := prov.SubscribeSync("_R_.>")
			if err != nil {
				t.Fatal(err)
			}
			if err := prov.Flush(); err != nil {
				t.Fatal(err)
			}
			// A user of another account (the service's own) asks the server
			// who it is.
			other := env.Connect(t, env.ServiceAccountCreds(t, "other", jwt.Permissions{}))
			if _, err := other.Request("$SYS.REQ.USER.INFO", nil, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if m, err := sub.NextMsg(2 * time.Second); err == nil {
				t.Errorf("the provisioner's creds read another account's reply from the server on %s: %.120s", m.Subject, m.Data)
			}
		})
	}
}
