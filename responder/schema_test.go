package responder_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// schemas are the compiled request and reply schemas of each endpoint, as
// the service publishes them in its micro metadata.
type schemas map[string]struct{ request, reply *jsonschema.Schema }

func compileSchemas(t *testing.T, info micro.Info) schemas {
	t.Helper()
	out := schemas{}
	for _, e := range info.Endpoints {
		c := jsonschema.NewCompiler()
		var got struct{ request, reply *jsonschema.Schema }
		for _, k := range []string{"request_schema", "response_schema"} {
			doc, err := jsonschema.UnmarshalJSON(strings.NewReader(e.Metadata[k]))
			if err != nil {
				t.Fatalf("%s %s is not JSON: %v", e.Name, k, err)
			}
			url := e.Name + "/" + k + ".json"
			if err := c.AddResource(url, doc); err != nil {
				t.Fatal(err)
			}
			s, err := c.Compile(url)
			if err != nil {
				t.Fatalf("%s %s does not compile: %v", e.Name, k, err)
			}
			if k == "request_schema" {
				got.request = s
			} else {
				got.reply = s
			}
		}
		out[e.Name] = got
	}
	return out
}

func validates(t *testing.T, s *jsonschema.Schema, body []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("not JSON: %v: %s", err, body)
	}
	return s.Validate(v)
}

// withUnknownField adds a field no request has to a JSON object.
func withUnknownField(body string) string {
	if body == "{}" {
		return `{"colour":"red"}`
	}
	return `{"colour":"red",` + body[1:]
}

// TestSchemasMatchTheService: each endpoint's published request schema
// takes the README's examples and refuses an unknown field as the service
// does, and the service's replies validate against its reply schemas.
func TestSchemasMatchTheService(t *testing.T) {
	t.Parallel()
	h := newHarness(t, bootstrap.Options{})
	sch := compileSchemas(t, discover[micro.Info](t, h.admin, "$SRV.INFO.provisioner"))
	kp, _ := nkeys.CreateUser()
	userPub, _ := kp.PublicKey()

	// The examples of README.md's "Requests" table, as written there;
	// fill replaces its placeholders, in order, with values.
	tests := []struct {
		endpoint, subject, example string
		fill                       []string
	}{
		{"account_create", "account.create", `{"name":"acme","limits":{"conn":10},"default_permissions":{"pub":{"deny":["admin.>"]}},"tags":["tier:gold"],"description":"..."}`, nil},
		{"account_get", "account.get", `{"account":ACCOUNT}`, []string{"ACCOUNT", `"acme"`}},
		{"account_list", "account.list", `{}`, nil},
		{"account_list", "account.list", `{"offset":0,"limit":100}`, nil},
		{"account_update", "account.update", `{"account":ACCOUNT,"limits":{...},"default_permissions":{...},"tags":[...],"description":"..."}`,
			[]string{"ACCOUNT", `"acme"`, "{...}", `{"conn":5,"mem_storage":-1,"disk_storage":1048576}`, "{...}", `{"sub":{"deny":["secret.>"]}}`, "[...]", `["tier:silver"]`}},
		{"user_create", "user.create", `{"account":ACCOUNT,"name":"alice","public_key":"U... (optional)","permissions":{...},"limits":{...},"expires_in":"24h","bearer_token":false,"allowed_connection_types":[...],"tags":[...]}`,
			[]string{"ACCOUNT", `"acme"`, "U... (optional)", userPub, "{...}", `{"pub":{"allow":["orders.>"]},"resp":{"max":1,"ttl":0}}`, "{...}", `{"subs":10,"src":["127.0.0.1/32"]}`, "[...]", `["STANDARD"]`, "[...]", `["team:a"]`}},
		{"user_list", "user.list", `{"account":ACCOUNT}`, []string{"ACCOUNT", `"acme"`}},
		// "and offset/limit as above"
		{"user_list", "user.list", `{"account":ACCOUNT,"offset":0,"limit":100}`, []string{"ACCOUNT", `"acme"`}},
		{"user_revoke", "user.revoke", `{"account":ACCOUNT,"user":"U... or an active user's name"}`, []string{"ACCOUNT", `"acme"`, "U... or an active user's name", "alice"}},
		{"account_delete", "account.delete", `{"account":ACCOUNT}`, []string{"ACCOUNT", `"acme"`}},
		// Endpoints the table does not show.
		{"account_create", "account.create", `{"name":"beta","roles":{"device":{"pub":{"allow":["telemetry.>"]}}}}`, nil},
		{"account_update", "account.update", `{"account":"beta","roles":{"device":null},"self_service":false}`, nil},
		{"account_rotate", "account.rotate", `{"account":"beta"}`, nil},
		{"reconcile", "reconcile", `{}`, nil},
		{"status", "status", `{}`, nil},
	}
	for _, tt := range tests {
		body := tt.example
		for i := 0; i+1 < len(tt.fill); i += 2 {
			body = strings.Replace(body, tt.fill[i], tt.fill[i+1], 1)
		}
		t.Run(tt.subject+" "+body, func(t *testing.T) {
			s, ok := sch[tt.endpoint]
			if !ok {
				t.Fatalf("no endpoint %s in micro info", tt.endpoint)
			}
			if err := validates(t, s.request, []byte(body)); err != nil {
				t.Errorf("the request schema refuses %s: %v", body, err)
			}
			r := h.req(t, tt.subject, body)
			if r.Code != 0 {
				t.Fatalf("the service refuses %s: %d %q", body, r.Code, r.Description)
			}
			if err := validates(t, s.reply, r.Raw); err != nil {
				t.Errorf("the reply does not validate against the reply schema: %v\n%s", err, r.Raw)
			}
			bad := withUnknownField(body)
			if err := validates(t, s.request, []byte(bad)); err == nil {
				t.Errorf("the request schema takes an unknown field: %s", bad)
			}
			if r := h.req(t, tt.subject, bad); r.Code != 400 {
				t.Errorf("the service takes an unknown field: %d %q", r.Code, r.Description)
			}
		})
	}

	// Each schema refuses what the service refuses, nested too.
	for _, tt := range []struct{ endpoint, subject, body string }{
		{"account_create", "account.create", `{"name":"x","limits":{"connections":5}}`},
		{"account_create", "account.create", `{"name":"x","limits":{"conn":"many"}}`},
		{"account_create", "account.create", `{"Name":"x"}`},
		{"user_create", "user.create", `{"account":"beta","name":"x","permissions":{"pub":{"allow":"orders.>"}}}`},
		{"audit", "audit", `{"after":-1}`},
	} {
		if err := validates(t, sch[tt.endpoint].request, []byte(tt.body)); err == nil {
			t.Errorf("the %s schema takes %s", tt.endpoint, tt.body)
		}
		if r := h.req(t, tt.subject, tt.body); r.Code != 400 {
			t.Errorf("the service takes %s: %d %q", tt.body, r.Code, r.Description)
		}
	}
	// The reply schemas are not vacuous.
	for _, tt := range []struct{ endpoint, body string }{
		{"account_list", `{"accounts":"acme","total":1}`},
		{"account_list", `{"accounts":[{"name":"acme"}],"total":1}`},
		{"account_get", `{"resolver":[]}`},
		{"user_create", `{"user":{"name":"alice","public_key":"U","jwt":7}}`},
	} {
		if err := validates(t, sch[tt.endpoint].reply, []byte(tt.body)); err == nil {
			t.Errorf("the %s reply schema takes %s", tt.endpoint, tt.body)
		}
	}
}

// TestSelfServiceSchemas: the self-service endpoints publish their schemas
// too, and they take what a tenant sends.
func TestSelfServiceSchemas(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	h := &harness{env: env, admin: env.Admin(t)}
	sch := compileSchemas(t, svc.Self.Info())
	h.ok(t, "account.create", tenantAccount)
	enroller, _ := h.userCreds(t, `{"account":"acme","name":"backend","role":"enroller"}`)
	tenant := env.Connect(t, enroller)
	for _, tt := range []struct{ endpoint, subject, body string }{
		{"self_user_create", "prov.self.user.create", `{"name":"d1","role":"device","expires_in":"1h","public_key":"` + newUserPub(t) + `"}`},
		{"self_user_list", "prov.self.user.list", `{"offset":0,"limit":10}`},
		{"self_user_revoke", "prov.self.user.revoke", `{"user":"d1"}`},
	} {
		s := sch[tt.endpoint]
		if err := validates(t, s.request, []byte(tt.body)); err != nil {
			t.Errorf("%s: the request schema refuses %s: %v", tt.endpoint, tt.body, err)
		}
		r := provtest.Request(t, tenant, tt.subject, tt.body)
		if r.Code != 0 {
			t.Fatalf("%s %s: %d %q", tt.subject, tt.body, r.Code, r.Description)
		}
		if err := validates(t, s.reply, r.Raw); err != nil {
			t.Errorf("%s: the reply does not validate: %v\n%s", tt.endpoint, err, r.Raw)
		}
		if err := validates(t, s.request, []byte(withUnknownField(tt.body))); err == nil {
			t.Errorf("%s: the request schema takes an unknown field", tt.endpoint)
		}
	}
}

// TestSchemasAgreeOnJWTTypes: for the jwt types a request embeds
// (permissions, roles, exports), the request schema takes what the
// service takes and refuses what it refuses for its shape, so that a
// client that validates against the schema neither refuses a good request
// nor sends one bound to fail.
func TestSchemasAgreeOnJWTTypes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, bootstrap.Options{})
	sch := compileSchemas(t, discover[micro.Info](t, h.admin, "$SRV.INFO.provisioner"))
	h.ok(t, "account.create", `{"name":"base"}`)
	h.ok(t, "account.create", `{"name":"exp","exports":[{"subject":"pub.>","type":"stream"}]}`)
	for _, tt := range []struct {
		endpoint, subject, body string
		ok                      bool
	}{
		// jwt.ResponsePermission: "max" and "ttl" default to 0.
		{"account_create", "account.create", `{"name":"r1","default_permissions":{"resp":{"max":1}}}`, true},
		{"account_create", "account.create", `{"name":"r2","default_permissions":{"resp":{"ttl":1000000000}}}`, true},
		{"account_create", "account.create", `{"name":"r3","roles":{"device":{"resp":{}}}}`, true},
		{"account_update", "account.update", `{"account":"base","roles":{"device":{"resp":{"max":2}}}}`, true},
		// A role given as null removes it on update; on create there is
		// none to remove, and the service refuses it.
		{"account_create", "account.create", `{"name":"rn","roles":{"device":null}}`, false},
		{"account_update", "account.update", `{"account":"base","roles":{"device":null}}`, true},
		{"user_create", "user.create", `{"account":"base","name":"u1","permissions":{"resp":{"max":1}}}`, true},
		{"user_create", "user.create", `{"account":"base","name":"u2","permissions":{"resp":{"max":"1"}}}`, false},
		// jwt.ServiceLatency: "sampling" defaults to "headers"; "results"
		// is needed.
		{"account_create", "account.create", `{"name":"l1","exports":[{"subject":"a.>","type":"service","service_latency":{"results":"lat.a"}}]}`, true},
		{"account_create", "account.create", `{"name":"l2","exports":[{"subject":"b.>","type":"service","service_latency":{"sampling":50}}]}`, false},
		// An export or import may not be null; the lists may.
		{"account_create", "account.create", `{"name":"n1","exports":[null]}`, false},
		{"account_create", "account.create", `{"name":"n2","imports":[null]}`, false},
		{"account_update", "account.update", `{"account":"base","exports":[null]}`, false},
		{"account_update", "account.update", `{"account":"base","imports":[null]}`, false},
		{"account_create", "account.create", `{"name":"n3","exports":null,"imports":null}`, true},
		{"account_update", "account.update", `{"account":"base","description":"d","exports":null,"imports":null}`, true},
		// An update needs a field to change.
		{"account_update", "account.update", `{"account":"base"}`, false},
	} {
		t.Run(tt.body, func(t *testing.T) {
			serr := validates(t, sch[tt.endpoint].request, []byte(tt.body))
			r := h.req(t, tt.subject, tt.body)
			if (r.Code == 0) != tt.ok {
				t.Fatalf("the service answers %d %q, the test wants ok=%v", r.Code, r.Description, tt.ok)
			}
			if (serr == nil) != tt.ok {
				t.Errorf("the %s request schema says %v; the service answers %d %q", tt.endpoint, serr, r.Code, r.Description)
			}
		})
	}
}

// TestSchemasAgreeOnBounds: the numbers the service refuses for their
// value (a page's negative offset or limit, a negative quota, a limit
// below -1) are refused by the request schemas too, and the bounds
// themselves are taken by both.
func TestSchemasAgreeOnBounds(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	sch := compileSchemas(t, discover[micro.Info](t, h.admin, "$SRV.INFO.provisioner"))
	h.ok(t, "account.create", `{"name":"base"}`)
	h.ok(t, "account.create", `{"name":"exp","exports":[{"subject":"pub.>","type":"stream"}]}`)
	for _, tt := range []struct {
		endpoint, subject, body string
		ok                      bool
	}{
		{"account_list", "account.list", `{"offset":-1}`, false},
		{"account_list", "account.list", `{"limit":-1}`, false},
		{"account_list", "account.list", `{"offset":0,"limit":0}`, true},
		{"user_list", "user.list", `{"account":"base","offset":-3}`, false},
		{"user_list", "user.list", `{"account":"base","limit":-3}`, false},
		{"account_create", "account.create", `{"name":"q1","self_service_quota":-1}`, false},
		{"account_update", "account.update", `{"account":"base","self_service_quota":-1}`, false},
		{"account_update", "account.update", `{"account":"base","self_service_quota":0}`, true},
		{"account_create", "account.create", `{"name":"l1","limits":{"conn":-2}}`, false},
		{"account_create", "account.create", `{"name":"l2","limits":{"mem_storage":-2}}`, false},
		{"account_create", "account.create", `{"name":"l3","limits":{"tiered_limits":{"R1":{"streams":-2}}}}`, false},
		{"account_create", "account.create", `{"name":"l4","limits":{"conn":-1,"mem_storage":-1,"disk_storage":0}}`, true},
		{"account_update", "account.update", `{"account":"base","limits":{"subs":-5}}`, false},
		{"account_create", "account.create", `{"name":"l5","roles":{"r":{"limits":{"subs":-2}}}}`, false},
		{"user_create", "user.create", `{"account":"base","name":"u1","limits":{"payload":-2}}`, false},
		{"user_create", "user.create", `{"account":"base","name":"u2","limits":{"payload":-1,"subs":0}}`, true},
	} {
		t.Run(tt.body, func(t *testing.T) {
			serr := validates(t, sch[tt.endpoint].request, []byte(tt.body))
			r := h.req(t, tt.subject, tt.body)
			if (r.Code == 0) != tt.ok {
				t.Fatalf("the service answers %d %q, the test wants ok=%v", r.Code, r.Description, tt.ok)
			}
			if (serr == nil) != tt.ok {
				t.Errorf("the %s request schema says %v; the service answers %d %q", tt.endpoint, serr, r.Code, r.Description)
			}
		})
	}
}

// TestSchemasRefuseBlankRequiredStrings: a required name, account or user
// given empty or blank is refused by the service ("is required and must
// not be empty"), and so by the request schemas.
func TestSchemasRefuseBlankRequiredStrings(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	sch := compileSchemas(t, discover[micro.Info](t, h.admin, "$SRV.INFO.provisioner"))
	h.ok(t, "account.create", `{"name":"base"}`)
	for _, tt := range []struct{ endpoint, subject, body string }{
		{"account_create", "account.create", `{"name":""}`},
		{"account_create", "account.create", `{"name":"  "}`},
		{"account_get", "account.get", `{"account":""}`},
		{"account_update", "account.update", `{"account":" ","tags":["a"]}`},
		{"account_rotate", "account.rotate", `{"account":""}`},
		{"account_delete", "account.delete", `{"account":"\t"}`},
		{"user_create", "user.create", `{"account":"base","name":""}`},
		{"user_create", "user.create", `{"account":"","name":"bob"}`},
		{"user_list", "user.list", `{"account":" "}`},
		{"user_revoke", "user.revoke", `{"account":"base","user":""}`},
	} {
		t.Run(tt.body, func(t *testing.T) {
			if r := h.req(t, tt.subject, tt.body); r.Code != 400 {
				t.Fatalf("the service answers %d %q, want 400", r.Code, r.Description)
			}
			if err := validates(t, sch[tt.endpoint].request, []byte(tt.body)); err == nil {
				t.Errorf("the %s request schema takes %s, which the service refuses", tt.endpoint, tt.body)
			}
		})
	}
	// A name with blanks around it is taken by both (the service trims it).
	body := `{"name":" padded "}`
	if err := validates(t, sch["account_create"].request, []byte(body)); err != nil {
		t.Errorf("the schema refuses %s: %v", body, err)
	}
	h.ok(t, "account.create", body)
}

// TestSchemasAgreeOnText: the free text the service refuses for what it
// holds (a name with a control or invisible character, a tag or a
// description with one or with U+FFFD, an export's name, description or
// info_url or an import's name with one, a role name that is not a short
// token) is refused
// by the request schemas too, and what the service takes (a padded name, a
// name with a plain space or of any script, a description over lines) is
// taken by both.
func TestSchemasAgreeOnText(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	sch := compileSchemas(t, discover[micro.Info](t, h.admin, "$SRV.INFO.provisioner"))
	h.ok(t, "account.create", `{"name":"base"}`)
	h.ok(t, "account.create", `{"name":"exp","exports":[{"subject":"pub.>","type":"stream"}]}`)
	for _, tt := range []struct {
		endpoint, subject, body string
		ok                      bool
	}{
		{"account_create", "account.create", `{"name":"a\u0000b"}`, false},
		{"account_create", "account.create", `{"name":"acme\u200b"}`, false},
		{"account_create", "account.create", `{"name":"\u202eacme"}`, false},
		{"account_create", "account.create", `{"name":"ac\u00a0me"}`, false},
		{"account_create", "account.create", `{"name":"ac\ufffdme"}`, false},
		{"account_create", "account.create", `{"name":"\t padded \u00a0\n"}`, true},
		{"account_create", "account.create", `{"name":"acme corp"}`, true},
		{"account_create", "account.create", `{"name":"ácmé 株式会社"}`, true},
		{"account_create", "account.create", `{"name":"t1","tags":["a\u0000b"]}`, false},
		{"account_create", "account.create", `{"name":"t2","tags":["dev:\u200bx"]}`, false},
		{"account_create", "account.create", `{"name":"t3","tags":[" tier:gold "]}`, true},
		{"account_create", "account.create", `{"name":"d1","description":"a\u001b[2Jb"}`, false},
		{"account_create", "account.create", `{"name":"d2","description":"line\nline\ttab"}`, true},
		{"account_update", "account.update", `{"account":"base","description":"\u0007"}`, false},
		{"account_update", "account.update", `{"account":"base","tags":["x\ry"]}`, false},
		{"account_create", "account.create", `{"name":"r1","roles":{"a b":{}}}`, false},
		{"account_create", "account.create", `{"name":"r2","roles":{"dev-1_x":{}}}`, true},
		{"user_create", "user.create", `{"account":"base","name":"u\u200b"}`, false},
		{"user_create", "user.create", `{"account":"base","name":"u1","tags":["\u0000"]}`, false},
		{"user_create", "user.create", `{"account":"base","name":" u2 "}`, true},
		// At most 128 characters, not bytes, once trimmed.
		{"account_create", "account.create", `{"name":"` + strings.Repeat("a", 129) + `"}`, false},
		{"account_create", "account.create", `{"name":"` + strings.Repeat("a", 128) + `"}`, true},
		{"account_create", "account.create", `{"name":"` + strings.Repeat("株", 128) + `"}`, true},
		{"account_create", "account.create", `{"name":"  ` + strings.Repeat("b", 128) + `  "}`, true},
		{"user_create", "user.create", `{"account":"base","name":"` + strings.Repeat("ü", 129) + `"}`, false},
		// A lone surrogate decodes to U+FFFD: refused in a tag and a
		// description as in a name.
		{"account_create", "account.create", `{"name":"s1","tags":["t\ud800"]}`, false},
		{"account_update", "account.update", `{"account":"base","description":"d\udc00"}`, false},
		{"user_create", "user.create", `{"account":"base","name":"u3","tags":["\ud800x"]}`, false},
		// An export's name, description and info_url, an import's name.
		{"account_create", "account.create", `{"name":"e1","exports":[{"subject":"a.>","type":"stream","description":"a\u001b[2Jb"}]}`, false},
		{"account_update", "account.update", `{"account":"base","exports":[{"subject":"a.>","type":"stream","description":"x\ud800"}]}`, false},
		{"account_update", "account.update", `{"account":"base","exports":[{"name":"a\u200bb","subject":"a.>","type":"stream"}]}`, false},
		{"account_update", "account.update", `{"account":"base","exports":[{"name":"\na","subject":"a.>","type":"stream"}]}`, false},
		{"account_update", "account.update", `{"account":"base","exports":[{"subject":"a.>","type":"stream","info_url":"https://example.com/\u009b2J"}]}`, false},
		{"account_update", "account.update", `{"account":"base","imports":[{"name":"i\u0007","account":"exp","subject":"pub.>","type":"stream"}]}`, false},
		{"account_create", "account.create", `{"name":"e2","exports":[{"name":"a b","subject":"a.>","type":"stream","description":"line\nline\ttab","info_url":"https://example.com/a"}]}`, true},
		{"account_update", "account.update", `{"account":"base","imports":[{"name":"from exp","account":"exp","subject":"pub.>","type":"stream"}]}`, true},
	} {
		t.Run(tt.body, func(t *testing.T) {
			serr := validates(t, sch[tt.endpoint].request, []byte(tt.body))
			r := h.req(t, tt.subject, tt.body)
			if (r.Code == 0) != tt.ok {
				t.Fatalf("the service answers %d %q, the test wants ok=%v", r.Code, r.Description, tt.ok)
			}
			if (serr == nil) != tt.ok {
				t.Errorf("the %s request schema says %v; the service answers %d %q", tt.endpoint, serr, r.Code, r.Description)
			}
		})
	}
}
