package main

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSwapSigningKeyLayouts: operator finish rewrites the config whatever
// its layout (an editor on Windows writes CRLF, a tool may write it on one
// line): operator_signing_key takes the next key, the next key goes, and
// every other field stays. With CRLF line endings or on one line, the
// next key stayed in the config, and finish said it was done.
func TestSwapSigningKeyLayouts(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, give string }{
		{"indented", "{\n  \"nats_url\": \"nats://h:4222\",\n  \"operator_signing_key\": \"old.nk\",\n  \"operator_signing_key_next\": \"new.nk\",\n  \"store_dir\": \"store\"\n}\n"},
		{"next last", "{\n  \"nats_url\": \"nats://h:4222\",\n  \"operator_signing_key\": \"old.nk\",\n  \"operator_signing_key_next\": \"new.nk\"\n}\n"},
		{"next first", "{\n  \"operator_signing_key_next\": \"new.nk\",\n  \"nats_url\": \"nats://h:4222\",\n  \"operator_signing_key\": \"old.nk\"\n}\n"},
		{"CRLF", "{\r\n  \"nats_url\": \"nats://h:4222\",\r\n  \"operator_signing_key\": \"old.nk\",\r\n  \"operator_signing_key_next\": \"new.nk\",\r\n  \"store_dir\": \"store\"\r\n}\r\n"},
		{"CRLF, next last", "{\r\n  \"nats_url\": \"nats://h:4222\",\r\n  \"operator_signing_key\": \"old.nk\",\r\n  \"operator_signing_key_next\": \"new.nk\"\r\n}\r\n"},
		{"one line", `{"nats_url":"nats://h:4222","operator_signing_key":"old.nk","operator_signing_key_next":"new.nk","store_dir":"store"}`},
		{"one line, next last", `{"nats_url":"nats://h:4222","operator_signing_key":"old.nk","operator_signing_key_next":"new.nk"}`},
		{"one line, next first", `{"operator_signing_key_next":"new.nk","operator_signing_key":"old.nk"}`},
		{"tabs and spaces", "{\n\t\"operator_signing_key\" : \"old.nk\" ,\n\t\"operator_signing_key_next\" : \"new.nk\" \n}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.json")
			if err := os.WriteFile(path, []byte(tt.give), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := swapSigningKey(path); err != nil {
				t.Fatalf("swap: %v", err)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var before, after map[string]any
			if err := json.Unmarshal([]byte(tt.give), &before); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &after); err != nil {
				t.Fatalf("the rewritten config is not JSON: %v\n%s", err, raw)
			}
			want := maps.Clone(before)
			want["operator_signing_key"] = "new.nk"
			delete(want, "operator_signing_key_next")
			if !maps.Equal(after, want) {
				t.Errorf("rewritten to %v, want %v\n%s", after, want, raw)
			}
			if strings.Contains(tt.give, "\r\n") && strings.Count(string(raw), "\n") != strings.Count(string(raw), "\r\n") {
				t.Errorf("the CRLF config has mixed line endings now:\n%q", raw)
			}
		})
	}
}
