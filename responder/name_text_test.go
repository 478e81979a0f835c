package responder_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestNamesWithInvisibleCharactersRefused: an account or user name with a
// Unicode format character (a zero-width space, a byte-order mark, a
// right-to-left override) or white space other than a plain space inside
// it is a 400 naming "name", and creates nothing: "acme" and
// "acme\u200b" would be two accounts that look the same in every list and
// log, and an override reorders the text of a terminal that prints it.
func TestNamesWithInvisibleCharactersRefused(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme"}`)
	h.ok(t, "user.create", `{"account":"acme","name":"alice"}`)
	before := h.ok(t, "account.list", `{}`)["total"]
	for _, bad := range []string{"acme\u200b", "\u202eemca", "ac\ufeffme", "ac\u00adme", "acme\u00a0corp", "acme\u2028x"} {
		body, _ := json.Marshal(map[string]string{"name": bad})
		if r := h.req(t, "account.create", body); r.Code != 400 || !strings.Contains(r.Description, `"name"`) {
			t.Errorf("account.create %q: %d %q, want 400 naming \"name\"", bad, r.Code, r.Description)
		}
		body, _ = json.Marshal(map[string]string{"account": "acme", "name": "alice" + bad})
		if r := h.req(t, "user.create", body); r.Code != 400 || !strings.Contains(r.Description, `"name"`) {
			t.Errorf("user.create %q: %d %q, want 400 naming \"name\"", "alice"+bad, r.Code, r.Description)
		}
	}
	if after := h.ok(t, "account.list", `{}`)["total"]; after != before {
		t.Errorf("account.list total %v after the refusals, was %v", after, before)
	}
	if users := h.ok(t, "user.list", `{"account":"acme"}`)["total"]; users != float64(1) {
		t.Errorf("acme has %v users after the refusals, want 1", users)
	}
	// A plain space inside a name, and letters of any script, are taken.
	h.ok(t, "account.create", `{"name":"acme corp"}`)
	h.ok(t, "account.create", `{"name":"ácmé 株式会社"}`)
}

// TestTagsAndDescriptionsRefuseControlCharacters: a tag or a description
// with a control character (a NUL, a terminal escape) or an invisible one
// is a 400 naming the field, on account.create, account.update and
// user.create, and changes nothing: both go into the JWT, where every tool
// that shows it prints them. A description may span lines.
func TestTagsAndDescriptionsRefuseControlCharacters(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme","tags":["tier:gold"],"description":"kept"}`)
	jwtBefore := h.ok(t, "account.get", `{"account":"acme"}`)["account"].(map[string]any)["jwt"]
	for _, tt := range []struct{ subject, body, field string }{
		{"user.create", `{"account":"acme","name":"u1","tags":["a\u0000b"]}`, "tags"},
		{"user.create", `{"account":"acme","name":"u2","tags":["dev:\u202ex"]}`, "tags"},
		{"account.create", `{"name":"b1","tags":["a\u001b[31mred"]}`, "tags"},
		{"account.create", `{"name":"b2","description":"a\u001b[2Jb"}`, "description"},
		{"account.create", `{"name":"b3","description":"a\u200bb"}`, "description"},
		{"account.update", `{"account":"acme","tags":["x\ry"]}`, "tags"},
		{"account.update", `{"account":"acme","description":"\u0007bell"}`, "description"},
	} {
		if r := h.req(t, tt.subject, tt.body); r.Code != 400 || !strings.Contains(r.Description, `"`+tt.field+`"`) {
			t.Errorf("%s %s: %d %q, want 400 naming %q", tt.subject, tt.body, r.Code, r.Description, tt.field)
		}
	}
	if n := h.ok(t, "account.list", `{}`)["total"]; n != float64(1) {
		t.Errorf("%v accounts after the refusals, want 1", n)
	}
	if n := h.ok(t, "user.list", `{"account":"acme"}`)["total"]; n != float64(0) {
		t.Errorf("acme has %v users after the refusals, want 0", n)
	}
	if got := h.ok(t, "account.get", `{"account":"acme"}`)["account"].(map[string]any)["jwt"]; got != jwtBefore {
		t.Error("a refused update changed acme's JWT")
	}
	h.ok(t, "account.update", `{"account":"acme","description":"line one\nline two\tand a tab"}`)
}

// TestInvalidUTF8Refused: a request whose bytes are not UTF-8, or whose
// name holds an escaped lone surrogate, is a 400 saying so and creates
// nothing. The decoder reads either as U+FFFD, so "acme\xff" and
// "acme\xfe" were both taken as the name "acme\ufffd": a name the caller
// never sent, and the second a 409 over a name it did not send either.
func TestInvalidUTF8Refused(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme"}`)
	for _, body := range [][]byte{
		[]byte("{\"name\":\"acme\xff\"}"),
		[]byte("{\"name\":\"acme\xc3\"}"),
		[]byte(`{"name":"acme\ud800"}`),
		[]byte("{\"account\":\"acme\",\"name\":\"alice\xfe\"}"),
		[]byte("{\"account\":\"acme\",\"tags\":[\"t\xff\"]}"),
	} {
		subject := "account.create"
		if bytes.Contains(body, []byte(`"account"`)) {
			subject = "user.create"
			if bytes.Contains(body, []byte(`"tags"`)) {
				subject = "account.update"
			}
		}
		if r := h.req(t, subject, body); r.Code != 400 || !strings.Contains(r.Description, "UTF-8") {
			t.Errorf("%s %q: %d %q, want 400 saying it is not UTF-8", subject, body, r.Code, r.Description)
		}
	}
	if n := h.ok(t, "account.list", `{}`)["total"]; n != float64(1) {
		t.Errorf("%v accounts after the refusals, want 1", n)
	}
	if n := h.ok(t, "user.list", `{"account":"acme"}`)["total"]; n != float64(0) {
		t.Errorf("acme has %v users after the refusals, want 0", n)
	}
}

// TestExportImportTextRefused: an export's name, description or info_url,
// or an import's name, with a control character (a terminal escape), an
// invisible one or U+FFFD (a lone surrogate) is a 400 naming the field's
// path, and changes nothing: they go into the account JWT that every tool
// prints, as an account's own description does.
func TestExportImportTextRefused(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"exp","exports":[{"name":"pub","subject":"pub.>","type":"stream"}]}`)
	h.ok(t, "account.create", `{"name":"acme"}`)
	jwtBefore := h.ok(t, "account.get", `{"account":"acme"}`)["account"].(map[string]any)["jwt"]
	for _, tt := range []struct{ subject, body, field string }{
		{"account.update", `{"account":"acme","exports":[{"subject":"a.>","type":"stream","description":"a\u001b]0;owned\u0007b"}]}`, "exports[0].description"},
		{"account.update", `{"account":"acme","exports":[{"subject":"a.>","type":"stream"},{"subject":"b.>","type":"service","description":"x\u202ey"}]}`, "exports[1].description"},
		{"account.update", `{"account":"acme","exports":[{"subject":"a.>","type":"stream","description":"x\ud800"}]}`, "exports[0].description"},
		{"account.update", `{"account":"acme","exports":[{"name":"a\u0000b","subject":"a.>","type":"stream"}]}`, "exports[0].name"},
		{"account.update", `{"account":"acme","exports":[{"name":"a\u200bb","subject":"a.>","type":"stream"}]}`, "exports[0].name"},
		{"account.update", `{"account":"acme","exports":[{"subject":"a.>","type":"stream","info_url":"https://example.com/\u009b2J"}]}`, "exports[0].info_url"},
		{"account.create", `{"name":"b1","exports":[{"subject":"a.>","type":"stream","description":"\u001b[2J"}]}`, "exports[0].description"},
		{"account.update", `{"account":"acme","imports":[{"name":"i\u001b[31m","account":"exp","subject":"pub.>","type":"stream"}]}`, "imports[0].name"},
		{"account.create", `{"name":"b2","imports":[{"name":"i\ufeff","account":"exp","subject":"pub.>","type":"stream"}]}`, "imports[0].name"},
	} {
		if r := h.req(t, tt.subject, tt.body); r.Code != 400 || !strings.Contains(r.Description, `"`+tt.field+`"`) {
			t.Errorf("%s %s: %d %q, want 400 naming %q", tt.subject, tt.body, r.Code, r.Description, tt.field)
		}
	}
	if n := h.ok(t, "account.list", `{}`)["total"]; n != float64(2) {
		t.Errorf("%v accounts after the refusals, want 2", n)
	}
	if got := h.ok(t, "account.get", `{"account":"acme"}`)["account"].(map[string]any)["jwt"]; got != jwtBefore {
		t.Error("a refused update changed acme's JWT")
	}
	// Plain text, over lines in a description, is taken.
	h.ok(t, "account.update", `{"account":"acme","exports":[{"name":"a b","subject":"a.>","type":"stream","description":"line\nline\ttab","info_url":"https://example.com/a"}],"imports":[{"name":"from exp","account":"exp","subject":"pub.>","type":"stream"}]}`)
}

// TestLoneSurrogateInTagsAndDescriptionsRefused: an escaped lone surrogate
// in a tag or a description decodes to U+FFFD, which is not what the
// caller sent; it is refused as in a name, not stored in the JWT.
func TestLoneSurrogateInTagsAndDescriptionsRefused(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme"}`)
	jwtBefore := h.ok(t, "account.get", `{"account":"acme"}`)["account"].(map[string]any)["jwt"]
	for _, tt := range []struct{ subject, body string }{
		{"account.update", `{"account":"acme","tags":["t\ud800"]}`},
		{"account.update", `{"account":"acme","description":"d\udc00"}`},
		{"account.create", `{"name":"b1","tags":["\ud800"]}`},
		{"account.create", `{"name":"b2","description":"\ud800x"}`},
		{"user.create", `{"account":"acme","name":"u1","tags":["t\ud800"]}`},
	} {
		if r := h.req(t, tt.subject, tt.body); r.Code != 400 || !strings.Contains(r.Description, "UTF-8") {
			t.Errorf("%s %s: %d %q, want 400 saying it is not UTF-8", tt.subject, tt.body, r.Code, r.Description)
		}
	}
	if n := h.ok(t, "account.list", `{}`)["total"]; n != float64(1) {
		t.Errorf("%v accounts after the refusals, want 1", n)
	}
	if n := h.ok(t, "user.list", `{"account":"acme"}`)["total"]; n != float64(0) {
		t.Errorf("acme has %v users after the refusals, want 0", n)
	}
	if got := h.ok(t, "account.get", `{"account":"acme"}`)["account"].(map[string]any)["jwt"]; got != jwtBefore {
		t.Error("a refused update changed acme's JWT")
	}
}
