package clientcmd

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spacecaptain/spacecaptain/pinning"
)

// lookup returns host's entry in the store at path.
func lookup(t *testing.T, path, host string) (pinning.Entry, bool) {
	t.Helper()
	s, err := pinning.NewStore(pinning.StoreOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	e, ok, err := s.Lookup(host)
	if err != nil {
		t.Fatal(err)
	}
	return e, ok
}

// pinsOf returns an entry's current pin and its backups.
func pinsOf(e pinning.Entry) (current pinning.Pin, backups []pinning.Pin) {
	for _, r := range e.Pins {
		if r.Current {
			current = r.Pin
		} else {
			backups = append(backups, r.Pin)
		}
	}
	return current, backups
}

// Trust on first use (the default without --ca and --pin, auto when stdin
// is not a terminal): the first connection records the key and the
// announced next key and says so; the same key passes again quietly.
func TestTOFUFirstUseThenSameKey(t *testing.T) {
	ts := startServer(t, false)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	r := mustRun(t, "", "echo", "hello", "--server", ts.addr, "--known-hosts", kh)
	if r.stdout != "hello\n" {
		t.Errorf("stdout: got %q", r.stdout)
	}
	if !strings.Contains(r.stderr, "trusting "+ts.addr+" on first use") || !strings.Contains(r.stderr, ts.pin(t).String()) {
		t.Errorf("first use is not reported:\n%s", r.stderr)
	}
	e, ok := lookup(t, kh, ts.addr)
	if !ok {
		t.Fatalf("%s not recorded:\n%s", ts.addr, readFile(t, kh))
	}
	cur, backups := pinsOf(e)
	if !cur.Equal(ts.pin(t)) || len(backups) != 1 || !backups[0].Equal(ts.nextPin(t)) {
		t.Errorf("recorded current %v, backups %v; want %v and the announced %v", cur, backups, ts.pin(t), ts.nextPin(t))
	}

	r = mustRun(t, "", "reverse", "abc", "--server", ts.addr, "--known-hosts", kh)
	if r.stdout != "cba\n" || strings.Contains(r.stderr, "first use") {
		t.Errorf("second use: stdout %q, stderr %q", r.stdout, r.stderr)
	}
}

// A changed key is refused with the distinct exit code, a warning that
// names the host, the pin on file and where, the pin offered and the
// forget command; the store is left byte for byte as it was. With --json
// the same facts come as a JSON error.
func TestTOFUKeyChanged(t *testing.T) {
	ts := startServer(t, false)
	other := startServer(t, false)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	// The store says ts.addr has other's key: as if ts had changed its key.
	line, err := pinning.Line(ts.addr, other.pin(t))
	if err != nil {
		t.Fatal(err)
	}
	before := "# kept\n" + line + "\n"
	if err := os.WriteFile(kh, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, "", false, "echo", "x", "--server", ts.addr, "--known-hosts", kh)
	if r.code != ExitKeyMismatch {
		t.Fatalf("exit %d, want %d\n%s", r.code, ExitKeyMismatch, r.stderr)
	}
	for _, want := range []string{
		"HAS CHANGED", ts.addr, other.pin(t).String(), ts.pin(t).String(),
		kh + ", line 2", "sc-cert pin forget --known-hosts " + kh + " " + ts.addr,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the warning lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Count(r.stderr, "sc-client: error:") != 1 {
		t.Errorf("want one error line:\n%s", r.stderr)
	}
	if got := readFile(t, kh); got != before {
		t.Errorf("the store changed:\n%s\nwant\n%s", got, before)
	}

	r = run(t, "", false, "echo", "x", "--server", ts.addr, "--known-hosts", kh, "--json")
	var e errorJSON
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil {
		t.Fatalf("%v in %q", err, r.stdout)
	}
	got := e.Error
	if got.Kind != "key_mismatch" || got.Code != ExitKeyMismatch || got.Host != ts.addr || got.PinOffered != ts.pin(t).String() ||
		got.KnownHosts != kh || got.Line != 2 || len(got.TrustedPins) != 1 || got.TrustedPins[0].Pin != other.pin(t).String() ||
		!strings.Contains(got.ForgetCommand, "sc-cert pin forget") {
		t.Errorf("JSON error: got %+v", got)
	}
	if readFile(t, kh) != before {
		t.Error("the store changed")
	}
}

// --tofu off refuses an unknown server (exit 4) with the command that adds
// its pin, and writes nothing.
func TestTOFUOff(t *testing.T) {
	ts := startServer(t, false)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	r := run(t, "", false, "time", "--server", ts.addr, "--known-hosts", kh, "--tofu", "off")
	if r.code != ExitUnknownHost || !strings.Contains(r.stderr, "sc-cert pin add") || !strings.Contains(r.stderr, ts.pin(t).String()) {
		t.Errorf("got exit %d\n%s\nwant %d and the add command with the pin", r.code, r.stderr, ExitUnknownHost)
	}
	if _, err := os.Stat(kh); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the store was written: %v", err)
	}
	// Once added, --tofu off connects.
	s, err := pinning.NewStore(pinning.StoreOptions{Path: kh})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ts.addr, ts.pin(t)); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "", "time", "--server", ts.addr, "--known-hosts", kh, "--tofu", "off")
}

// On a terminal the default is to ask: the question shows the pin and the
// certificate's subject; yes records, anything else refuses (exit 4) and
// records nothing. --tofu prompt without a terminal is a usage error.
func TestTOFUPrompt(t *testing.T) {
	ts := startServer(t, false)
	for _, tt := range []struct {
		answer   string
		wantCode int
	}{
		{"yes\n", 0},
		{"y\n", 0},
		{"no\n", ExitUnknownHost},
		{"\n", ExitUnknownHost},
		{"", ExitUnknownHost},
	} {
		t.Run(strings.TrimSpace(tt.answer), func(t *testing.T) {
			kh := filepath.Join(t.TempDir(), "known_hosts")
			// chat reads its lines from the same input after the answer.
			r := run(t, tt.answer+"after the answer\n", true, "chat", "--server", ts.addr, "--known-hosts", kh)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s", r.code, tt.wantCode, r.stderr)
			}
			for _, want := range []string{ts.pin(t).String(), "localhost", "[y/N]"} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("the question lacks %q:\n%s", want, r.stderr)
				}
			}
			_, recorded := lookup(t, kh, ts.addr)
			if recorded != (tt.wantCode == 0) {
				t.Errorf("recorded %v, want %v", recorded, tt.wantCode == 0)
			}
			if tt.wantCode == 0 && r.stdout != "after the answer\n" {
				t.Errorf("chat after the answer: got %q", r.stdout)
			}
			if tt.wantCode != 0 && !strings.Contains(r.stderr, "sc-cert pin add") {
				t.Errorf("no add command after declining:\n%s", r.stderr)
			}
		})
	}
	t.Run("known host is not asked about", func(t *testing.T) {
		kh := filepath.Join(t.TempDir(), "known_hosts")
		mustRun(t, "", "time", "--server", ts.addr, "--known-hosts", kh)
		r := run(t, "", true, "time", "--server", ts.addr, "--known-hosts", kh)
		if r.code != 0 || strings.Contains(r.stderr, "[y/N]") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("prompt without a terminal", func(t *testing.T) {
		r := run(t, "yes\n", false, "time", "--server", ts.addr, "--known-hosts", filepath.Join(t.TempDir(), "kh"), "--tofu", "prompt")
		if r.code != 2 || !strings.Contains(r.stderr, "--tofu prompt needs a terminal") {
			t.Errorf("exit %d\n%s", r.code, r.stderr)
		}
	})
}

// Key rollover: a client that connected once before sc-cert rotate
// --promote-next learned the next pin from KEYS and passes after it, the
// store moving to the new key and its new next key; a client whose entry
// was added by hand without the next pin is refused, its store unchanged.
func TestTOFURollover(t *testing.T) {
	ts := startServer(t, false)
	dir := t.TempDir()
	learned := filepath.Join(dir, "learned")
	byHand := filepath.Join(dir, "by-hand")
	mustRun(t, "", "time", "--server", ts.addr, "--known-hosts", learned)
	line, err := pinning.Line(ts.addr, ts.pin(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(byHand, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	old, promoted, next := ts.rollover(t)

	r := mustRun(t, "", "echo", "after", "--server", ts.addr, "--known-hosts", learned)
	if r.stdout != "after\n" || !strings.Contains(r.stderr, "moved to its next key") {
		t.Errorf("after the rollover: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	e, _ := lookup(t, learned, ts.addr)
	cur, backups := pinsOf(e)
	if !cur.Equal(promoted) || len(backups) != 1 || !backups[0].Equal(next) {
		t.Errorf("store after the rollover: current %v, backups %v; want %v and %v (the old %v retired)", cur, backups, promoted, next, old)
	}

	before := readFile(t, byHand)
	r = run(t, "", false, "echo", "after", "--server", ts.addr, "--known-hosts", byHand)
	if r.code != ExitKeyMismatch {
		t.Errorf("entry without the next pin: exit %d, want %d\n%s", r.code, ExitKeyMismatch, r.stderr)
	}
	if readFile(t, byHand) != before {
		t.Error("the refused client's store changed")
	}
}

// A server that does not answer KEYS is trusted on first use all the same:
// the handshake's key is recorded alone.
func TestTOFUServerWithoutKeys(t *testing.T) {
	addr, l := startNoKeysServer(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	mustRun(t, "", "echo", "x", "--server", addr, "--known-hosts", kh)
	e, ok := lookup(t, kh, addr)
	cur, backups := pinsOf(e)
	if !ok || !cur.Equal(mustPin(t, l.ServerCert)) || len(backups) != 0 {
		t.Errorf("recorded %v: current %v, backups %v", ok, cur, backups)
	}
}

// A damaged line for the host fails closed: not trusted, not treated as
// unknown, and the file is left alone.
func TestTOFUDamagedLine(t *testing.T) {
	ts := startServer(t, false)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	before := ts.addr + " current=sha256//garbage\n"
	if err := os.WriteFile(kh, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, "", false, "echo", "x", "--server", ts.addr, "--known-hosts", kh)
	if r.code == 0 || !strings.Contains(r.stderr, "line 1") {
		t.Errorf("exit %d\n%s\nwant a failure naming line 1", r.code, r.stderr)
	}
	if readFile(t, kh) != before {
		t.Error("the store changed")
	}
}
