package interop

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

// Trust on first use with the real binaries (issue 4):
//   - nothing is recorded when no TLS handshake completes (a plaintext
//     server on the other end);
//   - first use records the key, and the next key announced through KEYS,
//     into the default known hosts file under $XDG_CONFIG_HOME;
//   - the same key passes;
//   - after sc-cert rotate --promote-next (picked up by the running server
//     from its files), the client that connected before passes, the store
//     moving on to the new key;
//   - a client whose entry was added by hand, without the next pin, is
//     refused with exit 3 and the OpenSSH-style warning, and its store is
//     left byte for byte as it was; --json gives the same facts.
func TestTOFUWithRealBinaries(t *testing.T) {
	scCert := bin(t, "sc-cert")
	dir := t.TempDir()
	srv := startSCServer(t, dir)
	plain := startSCServer(t, t.TempDir(), "--plaintext")
	config := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + config, "HOME=" + config}
	store := filepath.Join(config, "space-captain", "known_hosts")
	scClientEnv := func(args ...string) (string, string, int) {
		t.Helper()
		out, errOut, err := runEnv(dir, env, bin(t, "sc-client"), args...)
		return out, errOut, exitCode(t, err)
	}

	// No completed handshake, nothing recorded.
	if _, errOut, code := scClientEnv("echo", "x", "--server", plain.Addr); code == 0 {
		t.Errorf("TLS to a plaintext server passed:\n%s", errOut)
	}
	if _, err := os.Stat(store); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the store was written without a completed handshake: %v", err)
	}

	// First use.
	out, errOut, code := scClientEnv("echo", "hello", "--server", srv.Addr)
	if code != 0 || out != "hello\n" || !strings.Contains(errOut, "trusting "+srv.Addr+" on first use") {
		t.Fatalf("first use: exit %d, stdout %q\n%s", code, out, errOut)
	}
	s, err := pinning.NewStore(pinning.StoreOptions{Path: store})
	if err != nil {
		t.Fatal(err)
	}
	e, ok, err := s.Lookup(srv.Addr)
	if err != nil || !ok || e.Set().String() != srv.Pin+";"+srv.NextPin {
		t.Fatalf("recorded %v, %v: %q; want %s then the announced %s", ok, err, e.Set().String(), srv.Pin, srv.NextPin)
	}

	// Same key.
	if out, errOut, code := scClientEnv("reverse", "abc", "--server", srv.Addr); code != 0 || out != "cba\n" || strings.Contains(errOut, "first use") {
		t.Errorf("same key: exit %d, %q\n%s", code, out, errOut)
	}

	// A second client whose entry was added by hand, with today's pin only:
	// it has never connected, so it has not learned the next pin.
	byHand := filepath.Join(t.TempDir(), "known_hosts")
	line, err := pinning.Line(srv.Addr, mustParsePin(t, srv.Pin))
	if err != nil {
		t.Fatal(err)
	}
	before := "# added by hand\n" + line + "\n"
	if err := os.WriteFile(byHand, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}

	// The rollover, behind the clients' backs.
	n := reloads(srv)
	run(t, dir, scCert, "rotate", "--promote-next")
	waitReloads(t, srv, n)
	promoted := srv.NextPin

	out, errOut, code = scClientEnv("echo", "after", "--server", srv.Addr)
	if code != 0 || out != "after\n" || !strings.Contains(errOut, "moved to its next key") {
		t.Errorf("TOFU client after the rollover: exit %d, %q\n%s", code, out, errOut)
	}
	if e, _, _ := s.Lookup(srv.Addr); e.Set().Current().String() != promoted {
		t.Errorf("the store's current pin after the rollover: got %s, want %s", e.Set().Current(), promoted)
	}

	out, errOut, code = scClientEnv("echo", "after", "--server", srv.Addr, "--known-hosts", byHand)
	if code != 3 {
		t.Fatalf("client without the next pin: exit %d, want 3\n%s", code, errOut)
	}
	for _, want := range []string{"HAS CHANGED", srv.Addr, srv.Pin, promoted, byHand + ", line 2",
		"sc-cert pin forget --known-hosts " + byHand + " " + srv.Addr} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the warning lacks %q:\n%s", want, errOut)
		}
	}
	if out != "" {
		t.Errorf("printed a result: %q", out)
	}
	if got := readString(t, byHand); got != before {
		t.Errorf("the refused client's store changed:\n%s\nwant\n%s", got, before)
	}
	out, _, code = scClientEnv("echo", "after", "--server", srv.Addr, "--known-hosts", byHand, "--json")
	var j struct {
		Error struct {
			Kind, Host, KnownHosts, ForgetCommand string
			Code, Line                            int
			PinOffered                            string `json:"pin_offered"`
		}
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("--json: %v in %q", err, out)
	}
	if code != 3 || j.Error.Kind != "key_mismatch" || j.Error.Code != 3 || j.Error.PinOffered != promoted || j.Error.Line != 2 {
		t.Errorf("--json error: exit %d, %+v", code, j.Error)
	}
	if readString(t, byHand) != before {
		t.Error("the refused client's store changed")
	}
	// The command the warning gives makes the host trusted on first use
	// again.
	run(t, dir, scCert, "pin", "forget", "--known-hosts", byHand, srv.Addr)
	if _, errOut, code := scClientEnv("echo", "x", "--server", srv.Addr, "--known-hosts", byHand); code != 0 || !strings.Contains(errOut, "first use") {
		t.Errorf("after sc-cert pin forget: exit %d\n%s", code, errOut)
	}
}

func mustParsePin(t *testing.T, s string) pinning.Pin {
	t.Helper()
	p, err := pinning.ParsePin(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
