package responder

import (
	"encoding/json"
	"testing"

	"github.com/natsprov/provisioner/api"
)

var createUserBody = []byte(`{"account":"acme","name":"alice","permissions":{"pub":{"allow":["orders.>"]}},"expires_in":"24h"}`)

// BenchmarkDecode measures the strict request decode (unknown fields and
// trailing data refused) next to its floor, a plain json.Unmarshal.
func BenchmarkDecode(b *testing.B) {
	b.Run("floor-unmarshal", func(b *testing.B) {
		for b.Loop() {
			var r api.CreateUserRequest
			if err := json.Unmarshal(createUserBody, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("strict-decode", func(b *testing.B) {
		for b.Loop() {
			var r api.CreateUserRequest
			if err := decode(createUserBody, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestDecodeRefuses(t *testing.T) {
	tests := []struct {
		name, body string
	}{
		{"array", `[]`},
		{"unknown field", `{"account":"a","nope":1}`},
		{"trailing data", `{"account":"a"}{}`},
		{"wrong type", `{"account":1}`},
		{"truncated", `{"account":"a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r api.AccountRequest
			if err := decode([]byte(tt.body), &r); err == nil {
				t.Errorf("decode(%s) accepted it", tt.body)
			}
		})
	}
	var r api.AccountRequest
	if err := decode(nil, &r); err != nil {
		t.Errorf("an empty body must read as {}: %v", err)
	}
}
