package config_test

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/config"
)

// TestExampleDocumentsEveryField keeps config.example.json in step with
// Config: it loads, it sets every field, and its _comment describes each.
func TestExampleDocumentsEveryField(t *testing.T) {
	const path = "../config.example.json"
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config.example.json does not load: %v", err)
	}
	if cfg.SubjectPrefix != "prov" {
		t.Errorf("subject_prefix = %q", cfg.SubjectPrefix)
	}
	// It shows the default deployment kind, the KV store.
	if cfg.StoreKind() != config.StoreJetStream {
		t.Errorf("config.example.json selects the %s store, want %s", cfg.StoreKind(), config.StoreJetStream)
	}
	raw, _ := os.ReadFile(path)
	var doc struct {
		Comment map[string]string `json:"_comment"`
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	ty := reflect.TypeFor[config.Config]()
	for i := range ty.NumField() {
		name, _, _ := strings.Cut(ty.Field(i).Tag.Get("json"), ",")
		if name == "_comment" {
			continue
		}
		if _, ok := fields[name]; !ok {
			t.Errorf("config.example.json does not set %q", name)
		}
		if doc.Comment[name] == "" {
			t.Errorf("config.example.json does not describe %q in _comment", name)
		}
	}
}
