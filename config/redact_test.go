package config

import (
	"strings"
	"testing"
)

// TestRedactURLMalformed: a nats_url part url.Parse refuses, or one
// without a scheme, still loses its password.
func TestRedactURLMalformed(t *testing.T) {
	for _, u := range []string{
		"nats://prov:s3cret@127.0.0.1:42x22",
		"nats://prov:s3cret pw@127.0.0.1:4222",
		"nats://a:1@h:4222,nats://prov:s3cret@[::1:4222",
		"prov:s3cret@127.0.0.1:4222",
	} {
		if got := RedactURL(u); strings.Contains(got, "s3cret") || !strings.Contains(got, "redacted") {
			t.Errorf("RedactURL(%q) = %q", u, got)
		}
		if err := checkNATSURL(u); err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("checkNATSURL(%q): %v", u, err)
		}
	}
	for _, u := range []string{"nats://127.0.0.1:4222", "127.0.0.1:4222", "localhost", "nats://h:1,,nats://h:2,", "tls://u:p@h:1, nats://h2:2"} {
		if err := checkNATSURL(u); err != nil {
			t.Errorf("checkNATSURL(%q): %v", u, err)
		}
	}
	for _, u := range []string{"nats://h:42x22", "nats://"} {
		if err := checkNATSURL(u); err == nil {
			t.Errorf("checkNATSURL(%q) accepted", u)
		}
	}
}
