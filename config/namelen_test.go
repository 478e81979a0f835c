package config

import (
	"strconv"
	"strings"
	"testing"
)

// TestLoadRefusesNamesTooLongForASubject: instance, service_name and
// subject_prefix go into the subjects the service subscribes to
// (<prefix>.status.<instance>, $SRV.PING.<service_name>, <prefix>.account.create)
// and that clients publish to. A SUB or PUB line longer than the server's
// max_control_line (4096 bytes by default) makes nats-server close the
// connection: a 5000-character instance loaded, and the start failed with
// "responder: flush subscriptions: nats: connection closed" after the log's
// "maximum control line exceeded", naming no field. Load must refuse each,
// naming the field and the limit; a name at the limit still loads.
func TestLoadRefusesNamesTooLongForASubject(t *testing.T) {
	long := strings.Repeat("a", 5000)
	for _, field := range []string{"instance", "service_name", "subject_prefix"} {
		t.Run(field, func(t *testing.T) {
			_, err := Load(writeConfig(t, with(map[string]any{field: long})))
			if err == nil {
				t.Fatalf("Load accepted a %s of %d characters", field, len(long))
			}
			if !strings.Contains(err.Error(), `"`+field+`"`) || !strings.Contains(err.Error(), strconv.Itoa(MaxNameLen)) {
				t.Errorf("error names neither %q nor the limit %d: %.300s", field, MaxNameLen, err)
			}
			if strings.Contains(err.Error(), long) {
				t.Errorf("error quotes the whole %d-character value", len(long))
			}
			if _, err := Load(writeConfig(t, with(map[string]any{field: long[:MaxNameLen]}))); err != nil {
				t.Errorf("a %s of %d characters: %v", field, MaxNameLen, err)
			}
		})
	}
	// A prefix of many tokens counts whole, dots included.
	prefix := strings.Repeat("ab.", 100) + "x"
	if _, err := Load(writeConfig(t, with(map[string]any{"subject_prefix": prefix}))); err == nil {
		t.Errorf("Load accepted a subject_prefix of %d characters", len(prefix))
	}
	if n := len(DefaultInstance()); n > MaxNameLen {
		t.Errorf("DefaultInstance is %d characters, past MaxNameLen", n)
	}
}
