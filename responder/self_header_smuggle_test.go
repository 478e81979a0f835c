package responder_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
)

// rawConn connects to the server with a creds file over the bare protocol,
// so that a test can send header bytes no client library writes.
func rawConn(t *testing.T, url, creds string) net.Conn {
	t.Helper()
	data, err := os.ReadFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	token, err := jwt.ParseDecoratedJWT(data)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(data)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "INFO ") {
		t.Fatalf("INFO: %q %v", line, err)
	}
	var info struct {
		Nonce string `json:"nonce"`
	}
	json.Unmarshal([]byte(line[5:]), &info)
	sig, err := kp.Sign([]byte(info.Nonce))
	if err != nil {
		t.Fatal(err)
	}
	connect, _ := json.Marshal(map[string]any{"jwt": token, "sig": base64.RawURLEncoding.EncodeToString(sig), "headers": true, "protocol": 1, "verbose": false, "pedantic": false})
	fmt.Fprintf(c, "CONNECT %s\r\nPING\r\n", connect)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		if strings.HasPrefix(line, "-ERR") {
			t.Fatalf("connect: %s", line)
		}
		if strings.HasPrefix(line, "PONG") {
			break
		}
	}
	go func() { // keep reading: the server's PINGs and errors
		for {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
		}
	}()
	c.SetDeadline(time.Time{})
	return c
}

// TestSelfServiceForgedHeaderBehindBareNewline: the server replaces a
// Nats-Request-Info header only where it finds one, a line after "\r\n";
// nats.go reads header lines split on "\n" alone and stops at the first
// empty line. A tenant that writes its own Nats-Request-Info after a bare
// "\n" (or ends its header block with "\n\n") keeps the server from seeing
// it, and the responder read the forged one: a user outside the account's
// self_service_role, forging the role's signing key as issuer_key, issued
// users. Such a request is refused.
func TestSelfServiceForgedHeaderBehindBareNewline(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	acct := h.ok(t, "account.create", tenantAccount)
	pub := str(acct, "account", "public_key")
	enrollerCreds, enroller := h.userCreds(t, `{"account":"acme","name":"backend","role":"enroller"}`)
	uc, err := jwt.DecodeUserClaims(enroller.JWT)
	if err != nil {
		t.Fatal(err)
	}
	roleKey := uc.Issuer // the enroller role's scoped key: a public key, no secret
	_ = enrollerCreds
	plainCreds, _ := h.userCreds(t, `{"account":"acme","name":"plain"}`)

	soon := time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)
	listen := h.env.Connect(t, plainCreds)
	forged, _ := json.Marshal(map[string]string{"acc": pub, "user": "UFORGED", "name": "forged", "issuer_key": roleKey})
	for i, hdr := range []string{
		"NATS/1.0\r\nX-A: a\nNats-Request-Info: " + string(forged) + "\r\n\r\n",
		"NATS/1.0\r\nNats-Request-Info: " + string(forged) + "\n\nXX",
		// The caller's deadline is the one header a tenant may add; its
		// lines written as short as nats.go still reads them.
		"NATS/1.0\r\n" + api.DeadlineHeader + ": " + soon + "\nNats-Request-Info: " + string(forged) + "\r\n\r\n",
		"NATS/1.0\r\n" + api.DeadlineHeader + ":" + soon + "\nNats-Request-Info:" + string(forged) + "\n\n",
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			inbox := nats.NewInbox()
			sub, err := listen.SubscribeSync(inbox)
			if err != nil {
				t.Fatal(err)
			}
			listen.Flush()
			raw := rawConn(t, h.env.Server.URL(), plainCreds)
			kp, _ := nkeys.CreateUser()
			upub, _ := kp.PublicKey()
			body, _ := json.Marshal(map[string]string{"name": fmt.Sprintf("smuggled%d", i), "role": "device", "public_key": upub})
			fmt.Fprintf(raw, "HPUB prov.self.user.create %s %d %d\r\n%s%s\r\nPING\r\n", inbox, len(hdr), len(hdr)+len(body), hdr, body)
			m, err := sub.NextMsg(10 * time.Second)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if c := m.Header.Get("Nats-Service-Error-Code"); c != "403" {
				var rep api.CreateUserReply
				json.Unmarshal(m.Data, &rep)
				t.Fatalf("a user outside the self-service role, forging the role's key behind a bare newline: code %q, issued %q; want 403", c, rep.User.PublicKey)
			}
		})
	}
}

// TestSelfServiceDeadlineWrittenWithoutSpace: clients other than nats.go
// may write a header as "Key:value". A tenant's request carrying its
// deadline so was one byte shorter than the check expected and refused
// 403, though README says any caller may send the header.
func TestSelfServiceDeadlineWrittenWithoutSpace(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", tenantAccount)
	enrollerCreds, _ := h.userCreds(t, `{"account":"acme","name":"backend","role":"enroller"}`)
	listen := h.env.Connect(t, enrollerCreds)
	inbox := nats.NewInbox()
	sub, err := listen.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	listen.Flush()
	raw := rawConn(t, h.env.Server.URL(), enrollerCreds)
	kp, _ := nkeys.CreateUser()
	upub, _ := kp.PublicKey()
	body, _ := json.Marshal(map[string]string{"name": "d1", "role": "device", "public_key": upub})
	hdr := "NATS/1.0\r\n" + api.DeadlineHeader + ":" + time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano) + "\r\n\r\n"
	fmt.Fprintf(raw, "HPUB prov.self.user.create %s %d %d\r\n%s%s\r\nPING\r\n", inbox, len(hdr), len(hdr)+len(body), hdr, body)
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	var rep api.CreateUserReply
	if c := m.Header.Get("Nats-Service-Error-Code"); c != "" || json.Unmarshal(m.Data, &rep) != nil || rep.User.PublicKey != upub {
		t.Fatalf("a tenant's create with its deadline written \"Key:value\": code %q %q, want the user issued", c, m.Header.Get("Nats-Service-Error"))
	}
}
