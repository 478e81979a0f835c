package config

import (
	"strings"
	"testing"
)

// TestLoadRefusesANATSURLPortOutOfRange: a nats_url whose port is no TCP
// port (0, or past 65535: a typo such as 42222 for 4222 with a digit too
// many, 422222) passed, since url.Parse takes any digits, and the start
// took nats.go's "dial tcp: address 422222: invalid port" for a server not
// up yet and waited for it forever: what checkNATSURL is there to stop.
// Each is refused, naming the field and the URL's position; a port in
// range and none at all (nats.go's default) still load.
func TestLoadRefusesANATSURLPortOutOfRange(t *testing.T) {
	for _, url := range []string{
		"nats://127.0.0.1:422222",
		"nats://127.0.0.1:65536",
		"nats://127.0.0.1:0",
		"127.0.0.1:99999",
		"nats://a:4222,nats://b:70000",
	} {
		_, err := Load(writeConfig(t, with(map[string]any{"nats_url": url})))
		if err == nil || !strings.Contains(err.Error(), `"nats_url"`) || !strings.Contains(err.Error(), "port") {
			t.Errorf("nats_url %q: error %v, want one naming the field and the port", url, err)
		}
	}
	for _, url := range []string{"nats://127.0.0.1:65535", "nats://127.0.0.1:1", "nats://127.0.0.1", "nats://a:4222,nats://b:4223"} {
		if _, err := Load(writeConfig(t, with(map[string]any{"nats_url": url}))); err != nil {
			t.Errorf("nats_url %q: %v", url, err)
		}
	}
}
