package cli

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/pinning"
)

func TestKnownHostsCommands(t *testing.T) {
	def, err := pinning.DefaultStorePath()
	if err != nil {
		t.Skip(err)
	}
	pin := pinning.PinOfSPKI([]byte("x"))
	tests := []struct {
		name, got, want string
	}{
		{"forget, another file", ForgetCommand("/tmp/kh", "h:1"), "sc-cert pin forget --known-hosts /tmp/kh h:1"},
		{"forget, quoted", ForgetCommand("/tmp/it's here", "[::1]:4242"), `sc-cert pin forget --known-hosts '/tmp/it'\''s here' '[::1]:4242'`},
		{"forget, the default file", ForgetCommand(def, "h:1"), "sc-cert pin forget h:1"},
		{"add", AddCommand("/tmp/kh", "h:1", pin), "sc-cert pin add --known-hosts /tmp/kh h:1 " + pin.String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

// Hints name the command for each trust error of package pinning, whose
// own messages name none (issue 13).
func TestTrustHints(t *testing.T) {
	a, b := pinning.PinOfSPKI([]byte("a")), pinning.PinOfSPKI([]byte("b"))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	changed := &pinning.KeyError{Host: "h:1", Want: []pinning.PinRecord{{Pin: a, Current: true}}, Got: b, Path: "/tmp/kh", Line: 5}
	tests := []struct {
		name string
		err  error
		want string // "" for no hint
	}{
		{"changed key", fmt.Errorf("handshake: %w", changed), "sc-cert pin forget --known-hosts /tmp/kh h:1"},
		{"configured pins", &pinning.KeyError{Host: "h:1", Got: b}, ""},
		{"unknown host", &pinning.UnknownHostError{Host: "h:1", Got: b, Path: "/tmp/kh"}, "sc-cert pin add --known-hosts /tmp/kh h:1 " + b.String()},
		{"broken line", &pinning.LineError{Path: "/tmp/kh", Line: 2, Host: "h:1", Err: errors.New("bad")}, "sc-cert pin forget --known-hosts /tmp/kh h:1"},
		{"expired", &pinning.ValidityError{Host: "h:1", NotAfter: now, Now: now.Add(time.Hour)}, "sc-cert rotate"},
		{"not yet valid", &pinning.ValidityError{Host: "h:1", NotBefore: now, NotAfter: now.Add(time.Hour), Now: now.Add(-time.Hour)}, ""},
		{"other", errors.New("x"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hints := TrustHints(tt.err)
			if tt.want == "" {
				if hints != nil {
					t.Errorf("got %q, want no hint", hints)
				}
				return
			}
			if len(hints) != 1 || !strings.Contains(hints[0], tt.want) {
				t.Errorf("got %q, want a hint with %q", hints, tt.want)
			}
			// The error itself names no command: the hint is not a repeat.
			if strings.Contains(tt.err.Error(), "sc-cert") {
				t.Errorf("the error %q names a command", tt.err)
			}
		})
	}
}

func TestKeyWarning(t *testing.T) {
	a, b := pinning.PinOfSPKI([]byte("a")), pinning.PinOfSPKI([]byte("b"))
	stored := &pinning.KeyError{Host: "h:1", Want: []pinning.PinRecord{{Pin: a, Current: true}}, Got: b, Path: "/tmp/my hosts", Line: 5}
	w := KeyWarning(stored)
	for _, sub := range []string{"THE KEY OF h:1 HAS CHANGED", a.String() + " (current)", b.String(), "/tmp/my hosts, line 5", "sc-cert pin forget --known-hosts '/tmp/my hosts' h:1"} {
		if !strings.Contains(w, sub) {
			t.Errorf("the warning lacks %q:\n%s", sub, w)
		}
	}
	pinned := KeyWarning(&pinning.KeyError{Host: "h:1", Want: []pinning.PinRecord{{Pin: a, Current: true}}, Got: b})
	if !strings.Contains(pinned, "NOT ONE OF THE PINNED KEYS") || strings.Contains(pinned, "sc-cert") {
		t.Errorf("configured pins: got\n%s", pinned)
	}
}
