package certcmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// pinLayout is a certificate directory of the default layout with the pins
// of its server key and next key.
type pinLayout struct {
	pki.Layout
	pin, next pinning.Pin
}

func mustPinLayout(t *testing.T) pinLayout {
	t.Helper()
	res, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: filepath.Join(t.TempDir(), "certs")})
	if err != nil {
		t.Fatal(err)
	}
	l := pinLayout{Layout: res.Layout}
	if l.pin, err = pinning.ReadPinFile(l.ServerCert); err != nil {
		t.Fatal(err)
	}
	if l.next, err = pinning.ReadPinFile(l.NextKey); err != nil {
		t.Fatal(err)
	}
	return l
}

// mustRunJSON runs sc-cert with args, requires exit 0 and decodes its
// --json output into a new T.
func mustRunJSON[T any](t *testing.T, env Env, args ...string) T {
	t.Helper()
	var v T
	stdout, stderr, code := run(t, env, args...)
	if code != 0 {
		t.Fatalf("sc-cert %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("sc-cert %s: --json output: %v\n%s", strings.Join(args, " "), err, stdout)
	}
	return v
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func otherPin(t *testing.T) pinning.Pin {
	t.Helper()
	p, err := pinning.ParsePin("sha256//" + strings.Repeat("A", 42) + "E=")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// add, list and forget work on the file --known-hosts names, and say what
// they changed.
func TestPinAddListForget(t *testing.T) {
	l := mustPinLayout(t)
	kh := filepath.Join(t.TempDir(), "sub", "known_hosts")
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	env := Env{Now: func() time.Time { return now }}

	list := mustRunJSON[pinListJSON](t, env, "pin", "list", "--known-hosts", kh, "--json")
	if list.KnownHosts != kh || len(list.Hosts) != 0 || len(list.Problems) != 0 {
		t.Fatalf("empty store: got %+v", list)
	}
	_, stderr, code := run(t, env, "pin", "list", "--known-hosts", kh)
	if code != 0 || !strings.Contains(stderr, "does not exist yet") {
		t.Errorf("list of a missing file: got exit %d, stderr %q", code, stderr)
	}

	// A new host: the pin is current, spelled canonically.
	added := mustRunJSON[pinAddJSON](t, env, "pin", "add", "--known-hosts", kh, "LocalHost.:04242", l.pin.String(), "--json")
	if added.Host != "localhost:4242" || !added.NewHost || len(added.Added) != 1 || added.Added[0] != l.pin.String() {
		t.Errorf("add: got %+v", added)
	}
	want := []pinRecordJSON{{Pin: l.pin.String(), Role: "current", FirstSeen: now, Via: "added"}}
	if !equalRecords(added.Entry.Pins, want) {
		t.Errorf("add: entry %+v, want %+v", added.Entry.Pins, want)
	}

	// Again: nothing changes, not even the file.
	before := mustReadFile(t, kh)
	stdout, stderr, code := run(t, env, "pin", "add", "--known-hosts", kh, "localhost:4242", l.pin.String())
	if code != 0 || !strings.Contains(stdout, "nothing changed") {
		t.Errorf("add again: exit %d, %q %q", code, stdout, stderr)
	}
	if !bytes.Equal(mustReadFile(t, kh), before) {
		t.Errorf("add again changed the file")
	}

	// The next pin, in hex, becomes a backup.
	stdout, _, code = run(t, env, "pin", "add", "--known-hosts", kh, "localhost:4242", l.next.Hex())
	if code != 0 || !strings.Contains(stdout, "as backup pin(s) of localhost:4242") {
		t.Errorf("add backup: exit %d, %q", code, stdout)
	}
	list = mustRunJSON[pinListJSON](t, env, "pin", "list", "--known-hosts", kh, "--json")
	want = append(want, pinRecordJSON{Pin: l.next.String(), Role: "backup", FirstSeen: now, Via: "added"})
	if len(list.Hosts) != 1 || list.Hosts[0].Host != "localhost:4242" || !equalRecords(list.Hosts[0].Pins, want) {
		t.Errorf("list: got %+v, want localhost:4242 with %+v", list.Hosts, want)
	}
	stdout, _, _ = run(t, env, "pin", "list", "--known-hosts", kh)
	for _, w := range []string{"localhost:4242 (line ", "current " + l.pin.String(), "backup  " + l.next.String(), "via added", "not seen yet"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("list text: missing %q in\n%s", w, stdout)
		}
	}

	// Both pins in one ";" list for a second host: current first.
	added = mustRunJSON[pinAddJSON](t, env, "pin", "add", "--known-hosts", kh, "[::1]:4242", l.next.String()+";"+l.pin.String(), "--json")
	if added.Host != "[::1]:4242" || len(added.Entry.Pins) != 2 || added.Entry.Pins[0].Pin != l.next.String() || added.Entry.Pins[0].Role != "current" {
		t.Errorf("add a list: got %+v", added)
	}

	forgot := mustRunJSON[pinForgetJSON](t, env, "pin", "forget", "--known-hosts", kh, "LOCALHOST:4242", "--json")
	if !forgot.Removed || forgot.Host != "localhost:4242" || !equalRecords(forgot.Pins, want) {
		t.Errorf("forget: got %+v", forgot)
	}
	list = mustRunJSON[pinListJSON](t, env, "pin", "list", "--known-hosts", kh, "--json")
	if len(list.Hosts) != 1 || list.Hosts[0].Host != "[::1]:4242" {
		t.Errorf("after forget: got %+v, want only [::1]:4242", list.Hosts)
	}
	stdout, _, code = run(t, env, "pin", "forget", "--known-hosts", kh, "localhost:4242")
	if code != 0 || !strings.Contains(stdout, "nothing changed") {
		t.Errorf("forget again: exit %d, %q", code, stdout)
	}
}

func equalRecords(got, want []pinRecordJSON) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Pin != w.Pin || g.Role != w.Role || !g.FirstSeen.Equal(w.FirstSeen) || !g.LastSeen.Equal(w.LastSeen) || g.Via != w.Via {
			return false
		}
	}
	return true
}

// Bad arguments are usage errors that say what is wrong, and leave the
// file alone.
func TestPinRefusesBadArguments(t *testing.T) {
	l := mustPinLayout(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	good := l.pin.String()
	tests := []struct {
		name    string
		args    []string
		wantErr []string
	}{
		{"add: no pin", []string{"pin", "add", "localhost:4242"}, []string{"want HOST:PORT and at least one PIN, got 1"}},
		{"add: malformed pin", []string{"pin", "add", "localhost:4242", "sha256//abc"}, []string{`parsing pin "sha256//abc"`, "hint: a pin is sha256//"}},
		{"add: pin of zeros", []string{"pin", "add", "localhost:4242", strings.Repeat("0", 64)}, []string{"all zeros"}},
		{"add: file for a pin", []string{"pin", "add", "localhost:4242", l.ServerCert}, []string{"parsing pin", "sc-cert pin show FILE|HOST:PORT prints them"}},
		{"add: no port", []string{"pin", "add", "localhost", good}, []string{`host "localhost": want HOST:PORT`, "hint: give the server as HOST:PORT"}},
		{"add: port zero", []string{"pin", "add", "localhost:0", good}, []string{"want a number from 1 to 65535"}},
		{"add: port too large", []string{"pin", "add", "localhost:65536", good}, []string{"want a number from 1 to 65535"}},
		{"add: bare IPv6", []string{"pin", "add", "::1:4242", good}, []string{"IPv6 address in brackets"}},
		{"add: bad host name", []string{"pin", "add", "a b:4242", good}, []string{"neither an IP address nor a host name"}},
		{"add: swapped", []string{"pin", "add", good, "localhost:4242"}, []string{"the arguments are HOST:PORT then PIN", "sc-cert pin add localhost:4242 " + good}},
		{"forget: no port", []string{"pin", "forget", "localhost"}, []string{"want HOST:PORT"}},
		{"forget: two hosts", []string{"pin", "forget", "a:1", "b:1"}, []string{"want one HOST:PORT, got 2"}},
		{"list: an argument", []string{"pin", "list", "a:1"}, []string{"want no arguments"}},
		{"show: nothing", []string{"pin", "show"}, []string{"want one FILE, DIR or HOST:PORT"}},
		{"show: next-key without next", []string{"pin", "show", l.Dir, "--next-key", l.NextKey}, []string{"--next-key needs --next"}},
		{"show: CA with next", []string{"pin", "show", l.CACert, "--next"}, []string{"is a CA certificate", "--next-key"}},
		{"unknown subcommand", []string{"pin", "remove", "a:1"}, []string{`unknown command "remove" for "sc-cert pin"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := run(t, Env{}, append(tt.args, "--known-hosts", kh)...)
			if code != 2 {
				t.Errorf("exit code: got %d, want 2 (%s)", code, stderr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q: want %q", stderr, w)
				}
			}
			if !strings.HasPrefix(stderr, "sc-cert: error: ") {
				t.Errorf("stderr %q: want it to start with sc-cert: error:", stderr)
			}
			if _, err := os.Stat(kh); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the known hosts file was created: %v", err)
			}
		})
	}
}

// An unreadable line is a warning with its line number: list shows the
// rest, exits 0 and changes nothing; add refuses that host; forget removes
// it and keeps the rest.
func TestPinUnreadableLines(t *testing.T) {
	l := mustPinLayout(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	good, err := pinning.Line("good.example:4242", l.pin)
	if err != nil {
		t.Fatal(err)
	}
	content := "# a comment\n" +
		good + "\n" +
		"bad.example:4242 current=sha256//notapin\n" +
		"not a host at all\n"
	if err := os.WriteFile(kh, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code := run(t, Env{}, "pin", "list", "--known-hosts", kh)
	if code != 0 {
		t.Errorf("list: exit %d, want 0", code)
	}
	if !strings.Contains(stdout, "good.example:4242 (line 2)") || strings.Contains(stdout, "bad.example") {
		t.Errorf("list stdout: want good.example on line 2 only:\n%s", stdout)
	}
	for _, w := range []string{"sc-cert: warning: known hosts file " + kh + ", line 3:", "bad.example:4242 is not trusted until the line is fixed", "sc-cert pin forget --known-hosts", ", line 4:"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("list stderr: missing %q in\n%s", w, stderr)
		}
	}
	list := mustRunJSON[pinListJSON](t, Env{}, "pin", "list", "--known-hosts", kh, "--json")
	if len(list.Hosts) != 1 || len(list.Problems) != 2 || list.Problems[0].Line != 3 || list.Problems[0].Host != "bad.example:4242" || list.Problems[1].Line != 4 {
		t.Errorf("list --json: got %+v", list)
	}
	if got := string(mustReadFile(t, kh)); got != content {
		t.Errorf("list changed the file:\n%s", got)
	}

	// add refuses the host whose line is damaged ...
	_, stderr, code = run(t, Env{}, "pin", "add", "--known-hosts", kh, "bad.example:4242", l.pin.String())
	if code != 1 || !strings.Contains(stderr, "line 3") || !strings.Contains(stderr, "pin forget") {
		t.Errorf("add to a damaged host: exit %d, %q", code, stderr)
	}
	// ... but a person may add another host despite the unreadable host on
	// line 4 (only trust on first use must wait for it).
	if _, stderr, code = run(t, Env{}, "pin", "add", "--known-hosts", kh, "new.example:4242", l.pin.String()); code != 0 {
		t.Errorf("add another host: exit %d, %q", code, stderr)
	}

	forgot := mustRunJSON[pinForgetJSON](t, Env{}, "pin", "forget", "--known-hosts", kh, "bad.example:4242", "--json")
	if !forgot.Removed || forgot.BadLine != 3 {
		t.Errorf("forget the damaged host: got %+v", forgot)
	}
	got := string(mustReadFile(t, kh))
	if strings.Contains(got, "bad.example") || !strings.Contains(got, good) || !strings.Contains(got, "not a host at all") || !strings.Contains(got, "# a comment") {
		t.Errorf("after forget, the file is:\n%s", got)
	}
}

// show reads the pins of a layout directory, a certificate, a key (also an
// encrypted one) and a public key; --next adds the next key's.
func TestPinShowFiles(t *testing.T) {
	l := mustPinLayout(t)
	dir := t.TempDir()
	pubFile := filepath.Join(dir, "server.pub")
	key, err := pki.ReadKeyFile(l.ServerKey, pki.KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	pw := Env{Getenv: func(k string) string {
		if k == "SC_KEY_PASSWORD" {
			return "correct horse"
		}
		return ""
	}}
	encCert, encKey := filepath.Join(dir, "enc.crt"), filepath.Join(dir, "enc.key")
	if _, stderr, code := run(t, pw, "create", "--cert", encCert, "--key", encKey, "--encrypt-key"); code != 0 {
		t.Fatalf("create: %s", stderr)
	}
	encPin, err := pinning.ReadPinFile(encCert)
	if err != nil {
		t.Fatal(err)
	}
	both := l.pin.String() + ";" + l.next.String()

	tests := []struct {
		name     string
		env      Env
		args     []string
		kind     string
		wantPins string
		nextFrom string
	}{
		{"dir", Env{}, []string{l.Dir}, "layout", l.pin.String(), ""},
		{"dir next", Env{}, []string{l.Dir, "--next"}, "layout", both, l.NextKey},
		{"cert next", Env{}, []string{l.ServerCert, "--next"}, "certificate", both, l.NextKey},
		{"key next", Env{}, []string{l.ServerKey, "--next"}, "private key", both, l.NextKey},
		{"next key", Env{}, []string{l.NextKey}, "private key", l.next.String(), ""},
		{"public key", Env{}, []string{pubFile}, "public key", l.pin.String(), ""},
		{"public key, next-key", Env{}, []string{pubFile, "--next", "--next-key", l.NextKey}, "public key", both, l.NextKey},
		{"CA, next-key", Env{}, []string{l.CACert, "--next", "--next-key", l.NextKey}, "CA certificate", "", l.NextKey},
		{"encrypted key", pw, []string{encKey}, "private key", encPin.String(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustRunJSON[pinShowJSON](t, tt.env, append([]string{"pin", "show", "--json"}, tt.args...)...)
			if got.Kind != tt.kind || got.NextFrom != tt.nextFrom || got.Verified != nil || got.Warning != "" {
				t.Errorf("got %+v, want kind %q, next from %q", got, tt.kind, tt.nextFrom)
			}
			if tt.wantPins != "" && got.Pins != tt.wantPins {
				t.Errorf("pins: got %q, want %q", got.Pins, tt.wantPins)
			}
			if got.Current != strings.Split(got.Pins, ";")[0] {
				t.Errorf("current %q is not the first of %q", got.Current, got.Pins)
			}
		})
	}

	// The text form names the pins and gives the lists to hand out.
	stdout, _, code := run(t, Env{}, "pin", "show", l.Dir, "--next")
	for _, w := range []string{
		"current " + l.pin.String() + "  (from " + l.ServerCert + ")",
		"next    " + l.next.String() + "  (from " + l.NextKey + ")",
		"curl --pinnedpubkey '" + both + "'",
		"sc-client --pin '" + both + "'",
	} {
		if code != 0 || !strings.Contains(stdout, w) {
			t.Errorf("show --next text: exit %d, missing %q in\n%s", code, w, stdout)
		}
	}

	t.Run("no next key", func(t *testing.T) {
		_, stderr, code := run(t, Env{}, "pin", "show", encCert, "--next")
		if code != 1 || !strings.Contains(stderr, "there is no next key to show") || !strings.Contains(stderr, "server.next.key") {
			t.Errorf("got exit %d, %q", code, stderr)
		}
	})
	t.Run("encrypted key without passphrase", func(t *testing.T) {
		_, stderr, code := run(t, Env{}, "pin", "show", encKey)
		if code != 1 || !strings.Contains(stderr, "passphrase") {
			t.Errorf("got exit %d, %q", code, stderr)
		}
	})
	t.Run("neither file nor host", func(t *testing.T) {
		_, stderr, code := run(t, Env{}, "pin", "show", filepath.Join(dir, "missing.crt"))
		if code != 1 || !strings.Contains(stderr, "give a certificate or key FILE, a certificate DIR") {
			t.Errorf("got exit %d, %q", code, stderr)
		}
	})
	t.Run("empty directory", func(t *testing.T) {
		_, stderr, code := run(t, Env{}, "pin", "show", t.TempDir())
		if code != 1 || !strings.Contains(stderr, "holds neither server.crt nor server.key") {
			t.Errorf("got exit %d, %q", code, stderr)
		}
	})
}

// keysServer is a Space Captain server for show's tests: TLS with the
// layout's certificate, answering requests with proto.AppendReply. keys is
// the KEYS reply body (nil: KEYS not supported).
func startKeysServer(t *testing.T, l pinLayout, version uint16, keys []byte) string {
	t.Helper()
	pair, err := pki.LoadPair(l.ServerCert, l.ServerKey, pki.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*pair.TLSCertificate()}, MinVersion: version, MaxVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	env := proto.Env{}
	if keys != nil {
		env.Keys = func() []byte { return keys }
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				dec := proto.NewDecoder(c, proto.DefaultMaxBody)
				for {
					f, err := dec.Next()
					if err != nil {
						return
					}
					if _, err := c.Write(proto.AppendReply(nil, f, env)); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// show HOST:PORT: the key a server presents and the next pins it
// announces, verified when the known hosts file has the server, said to be
// unverified when not, refused when the key is not the one on file — and
// the file is never written.
func TestPinShowServer(t *testing.T) {
	l := mustPinLayout(t)
	announce := proto.AppendKeys(nil, l.pin.String(), []string{l.next.String()})
	both := l.pin.String() + ";" + l.next.String()
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			addr := startKeysServer(t, l, v, announce)
			kh := filepath.Join(t.TempDir(), "known_hosts")

			// Unknown: the pins, and the warning that they prove nothing.
			got := mustRunJSON[pinShowJSON](t, Env{}, "pin", "show", "--known-hosts", kh, addr, "--next", "--json")
			if got.Kind != "server" || got.Pins != both || got.Verified == nil || *got.Verified || !strings.Contains(got.Warning, "prove nothing") {
				t.Errorf("unknown host: got %+v", got)
			}
			stdout, _, _ := run(t, Env{}, "pin", "show", "--known-hosts", kh, addr)
			if !strings.Contains(stdout, "NOT VERIFIED: "+addr+" is not in the known hosts file") || !strings.Contains(stdout, "current "+l.pin.String()+"  (presented by "+addr+")") {
				t.Errorf("unknown host, text:\n%s", stdout)
			}
			if _, err := os.Stat(kh); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("show created the known hosts file: %v", err)
			}

			// Known: verified, and the next pin came inside that session.
			if _, stderr, code := run(t, Env{}, "pin", "add", "--known-hosts", kh, addr, l.pin.String()); code != 0 {
				t.Fatal(stderr)
			}
			before := mustReadFile(t, kh)
			got = mustRunJSON[pinShowJSON](t, Env{}, "pin", "show", "--known-hosts", kh, addr, "--next", "--json")
			if got.Pins != both || got.Verified == nil || !*got.Verified || got.Warning != "" || !strings.Contains(got.VerifiedBy, kh+", line ") {
				t.Errorf("known host: got %+v", got)
			}
			if !bytes.Equal(mustReadFile(t, kh), before) {
				t.Errorf("show changed the known hosts file")
			}

			// Another key on file: refused, with the forget command.
			if _, _, code := run(t, Env{}, "pin", "forget", "--known-hosts", kh, addr); code != 0 {
				t.Fatal("forget failed")
			}
			if _, _, code := run(t, Env{}, "pin", "add", "--known-hosts", kh, addr, otherPin(t).String()); code != 0 {
				t.Fatal("add failed")
			}
			before = mustReadFile(t, kh)
			_, stderr, code := run(t, Env{}, "pin", "show", "--known-hosts", kh, addr, "--next")
			if code != ExitPinMismatch || !strings.Contains(stderr, "host key for "+addr+" has changed") || !strings.Contains(stderr, "sc-cert pin forget") || !strings.Contains(stderr, "hint: to look at the key it presents without trusting it: sc-cert fingerprint "+addr) {
				t.Errorf("changed key: exit %d, %q", code, stderr)
			}
			if !bytes.Equal(mustReadFile(t, kh), before) {
				t.Errorf("a refused show changed the known hosts file")
			}
		})
	}

	kh := filepath.Join(t.TempDir(), "known_hosts")
	tests := []struct {
		name    string
		keys    []byte
		wantErr string
	}{
		{"KEYS not supported", nil, "does not announce its keys"},
		{"no next key", proto.AppendKeys(nil, l.pin.String(), nil), "announces no next key"},
		{"announces another current key", proto.AppendKeys(nil, otherPin(t).String(), []string{l.next.String()}), "as its current pin but presented the key " + l.pin.String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startKeysServer(t, l, 0, tt.keys)
			_, stderr, code := run(t, Env{}, "pin", "show", "--known-hosts", kh, addr, "--next")
			if code != 1 || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("got exit %d, %q; want 1 and %q", code, stderr, tt.wantErr)
			}
			// Without --next KEYS is not asked.
			if _, stderr, code := run(t, Env{}, "pin", "show", "--known-hosts", kh, addr); code != 0 {
				t.Errorf("without --next: exit %d, %q", code, stderr)
			}
		})
	}

	t.Run("nothing listening", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, stderr, code := run(t, Env{}, "pin", "show", "--known-hosts", kh, addr)
		if code != 1 || !strings.Contains(stderr, "is a Space Captain server listening on "+addr) {
			t.Errorf("got exit %d, %q", code, stderr)
		}
	})
	t.Run("next-key with a server", func(t *testing.T) {
		_, stderr, code := run(t, Env{}, "pin", "show", "--known-hosts", kh, "127.0.0.1:1", "--next", "--next-key", l.NextKey)
		if code != 2 || !strings.Contains(stderr, "--next-key is for a FILE or DIR") {
			t.Errorf("got exit %d, %q", code, stderr)
		}
	})
}

// Every pin command has help with examples.
func TestPinHelp(t *testing.T) {
	for _, sub := range []string{"", "list", "add", "forget", "show"} {
		args := []string{"pin", "--help"}
		if sub != "" {
			args = []string{"pin", sub, "--help"}
		}
		stdout, _, code := run(t, Env{}, args...)
		if code != 0 || !strings.Contains(stdout, "Examples:") || !strings.Contains(stdout, "--known-hosts FILE") {
			t.Errorf("sc-cert %s: exit %d, help without examples or --known-hosts:\n%s", strings.Join(args, " "), code, stdout)
		}
	}
}
