package pinning

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// An IPv4-mapped IPv6 address is the IPv4 host it maps: pinned as
// 127.0.0.1:P, [::ffff:127.0.0.1]:P finds the same entry instead of being
// a new host trusted on first use (issue 12).
func TestMappedIPv4FindsTheSameHost(t *testing.T) {
	s, _ := newTestStore(t)
	pin := PinOf(mustLeaf(t, mustKey(t)))
	if err := s.Add("127.0.0.1:4242", pin); err != nil {
		t.Fatal(err)
	}
	for _, spelling := range []string{"[::ffff:127.0.0.1]:4242", "[::FFFF:7f00:1]:04242", "[0:0:0:0:0:ffff:127.0.0.1]:4242"} {
		e, found, err := s.Lookup(spelling)
		if err != nil || !found || e.Host != "127.0.0.1:4242" {
			t.Errorf("%s: got %+v, found %v, %v; want the 127.0.0.1:4242 entry", spelling, e, found, err)
		}
	}
	h, err := canonicalHost("[::ffff:10.0.0.1]:1")
	if err != nil || h != "10.0.0.1:1" {
		t.Errorf("canonicalHost: got %q, %v; want 10.0.0.1:1", h, err)
	}
}

// A pin of another hash algorithm is told so, not "invalid base64".
func TestParsePinOtherAlgorithm(t *testing.T) {
	for _, s := range []string{"sha1//2jmj7l5rSw0yVb/vlWAYkK/YBwk=", "sha384//abc", "SHA512//x"} {
		_, err := ParsePin(s)
		if err == nil || !strings.Contains(err.Error(), "only sha256// pins are supported") || strings.Contains(err.Error(), "base64") {
			t.Errorf("%s: got %v, want \"only sha256// pins are supported\"", s, err)
		}
	}
}

// A known hosts file others may write to, or owned by another user, is
// refused rather than read and kept as it is (issue 12: a 0666 store was
// accepted and kept 0666).
func TestStoreRefusesUnsafeFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	s, path := newTestStore(t)
	pin := PinOf(mustLeaf(t, mustKey(t)))
	if err := s.Add("a.example:1", pin); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Lookup("a.example:1"); !errors.Is(err, ErrFileWritable) || !strings.Contains(err.Error(), "chmod go-w") {
		t.Errorf("0666 store: got %v, want ErrFileWritable with the chmod", err)
	}
	if err := s.Add("b.example:1", pin); !errors.Is(err, ErrFileWritable) {
		t.Errorf("Add to a 0666 store: got %v, want ErrFileWritable", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o666 {
		t.Errorf("the refused store was rewritten: %v %v", fi.Mode(), err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(path), 0o777); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Lookup("a.example:1"); !errors.Is(err, ErrFileWritable) || !strings.Contains(err.Error(), "directory") {
		t.Errorf("store in a 0777 directory: got %v, want ErrFileWritable naming the directory", err)
	}
	if err := os.Chmod(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Lookup("a.example:1"); !errors.Is(err, ErrFileOwner) {
			t.Errorf("store owned by nobody, read as root: got %v, want ErrFileOwner", err)
		}
	}
}

// A pin given as the certificate's SHA-256 fingerprint is recognisable as
// such in the KeyError, so that a client can say so instead of warning of
// an attack (issue 12).
func TestKeyErrorRecognisesCertificateFingerprint(t *testing.T) {
	key := mustKey(t)
	leaf := mustLeaf(t, key)
	srv := startServer(t, serverSpec{cert: tlsCert(key, leaf), version: tls.VersionTLS13})
	sum := sha256.Sum256(leaf.Raw)
	fp, err := ParsePin(strings.ToUpper(hex.EncodeToString(sum[:])))
	if err != nil {
		t.Fatal(err)
	}
	if !fp.IsFingerprintOf(leaf) || PinOf(leaf).IsFingerprintOf(leaf) {
		t.Fatal("IsFingerprintOf does not tell the certificate's digest from the key's")
	}
	set, _ := NewSet(fp)
	tr, err := NewTrust(TrustOptions{Mode: ModePin, Pins: set, Host: srv.addr})
	if err != nil {
		t.Fatal(err)
	}
	_, err = dial(t, srv.addr, tr.Config())
	var ke *KeyError
	if !errors.As(err, &ke) || !ke.WantsCertificateFingerprint() {
		t.Fatalf("got %v, want a KeyError that recognises the certificate fingerprint", err)
	}
	other, _ := NewSet(PinOf(mustLeaf(t, mustKey(t))))
	tr, _ = NewTrust(TrustOptions{Mode: ModePin, Pins: other, Host: srv.addr})
	_, err = dial(t, srv.addr, tr.Config())
	if !errors.As(err, &ke) || ke.WantsCertificateFingerprint() {
		t.Errorf("a real wrong pin: got %v, want a KeyError that is not a fingerprint mistake", err)
	}
}

// newTestStore returns a store in a private directory of its own.
func newTestStore(t *testing.T) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "space-captain")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "known_hosts")
	return mustStore(t, path, time.Now), path
}
