package pki

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestInitLayout(t *testing.T) {
	for _, selfSigned := range []bool{false, true} {
		t.Run(fmt.Sprintf("self-signed=%v", selfSigned), func(t *testing.T) {
			r := mustInit(t, InitOptions{SelfSigned: selfSigned})
			l := r.Layout
			wantFiles := map[string]fs.FileMode{l.CACert: 0o644, l.ServerCert: 0o644, l.ServerKey: 0o600, l.NextKey: 0o600}
			if !selfSigned {
				wantFiles[l.CAKey] = 0o600
			}
			for path, mode := range wantFiles {
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if runtime.GOOS != "windows" && fi.Mode().Perm() != mode {
					t.Errorf("%s: mode %04o, want %04o", path, fi.Mode().Perm(), mode)
				}
			}
			if _, err := os.Stat(l.CAKey); selfSigned && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("self-signed layout has a ca.key: %v", err)
			}
			assertNoLeftovers(t, l.Dir)
			p, err := LoadPair(l.ServerCert, l.ServerKey, LoadOptions{Key: KeyOptions{RequirePrivateFile: true}})
			if err != nil {
				t.Fatal(err)
			}
			ca := mustReadCert(t, l.CACert)
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			if _, err := p.Leaf().Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"}); err != nil {
				t.Errorf("server.crt does not verify against ca.crt: %v", err)
			}
			if selfSigned != bytes.Equal(mustRead(t, l.CACert), mustRead(t, l.ServerCert)) {
				t.Errorf("ca.crt is a copy of server.crt: got %v, want %v", !selfSigned, selfSigned)
			}
			next, err := ReadKeyFile(l.NextKey, KeyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !samePublicKey(next.Signer.Public(), r.NextKey) || samePublicKey(r.NextKey, p.Leaf().PublicKey) {
				t.Error("next key: want a distinct key matching InitResult.NextKey")
			}

			// A second init refuses, naming the files, and changes nothing.
			before := snapshot(t, l)
			_, err = InitLayout(context.Background(), InitOptions{Dir: l.Dir, SelfSigned: selfSigned})
			if !errors.Is(err, ErrExists) || !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "server.crt") {
				t.Fatalf("second init: got %v, want ErrExists naming server.crt", err)
			}
			if after := snapshot(t, l); !after.equal(before) {
				t.Error("refused init changed files")
			}
			if _, err := InitLayout(context.Background(), InitOptions{Dir: l.Dir, SelfSigned: selfSigned, Overwrite: true}); err != nil {
				t.Fatalf("init with Overwrite: %v", err)
			}
			if after := snapshot(t, l); after[l.ServerCert] == before[l.ServerCert] {
				t.Error("init with Overwrite left server.crt unchanged")
			}
		})
	}
}

// TestInitSelfSignedOverCA re-initialises a CA layout as self-signed: the
// old CA key, which nothing in the new layout uses, must not linger.
func TestInitSelfSignedOverCA(t *testing.T) {
	l := mustInit(t, InitOptions{}).Layout
	res, err := InitLayout(context.Background(), InitOptions{Dir: l.Dir, SelfSigned: true, Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.CAKey); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ca.key after self-signed re-init: got %v, want it removed", err)
	}
	if res.RemovedCAKey != l.CAKey {
		t.Errorf("RemovedCAKey: got %q, want %q", res.RemovedCAKey, l.CAKey)
	}
	// And without an old CA key there is nothing to report.
	res, err = InitLayout(context.Background(), InitOptions{Dir: l.Dir, SelfSigned: true, Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.RemovedCAKey != "" {
		t.Errorf("RemovedCAKey on a self-signed re-init: got %q, want none", res.RemovedCAKey)
	}
}

func TestInitLayoutEncryptedKeys(t *testing.T) {
	r := mustInit(t, InitOptions{KeyPassphrase: []byte("server pw"), CAKeyPassphrase: []byte("ca pw")})
	l := r.Layout
	if _, err := LoadPair(l.ServerCert, l.ServerKey, LoadOptions{}); !errors.Is(err, ErrPassphraseRequired) {
		t.Errorf("no passphrase: got %v", err)
	}
	if _, err := LoadPair(l.ServerCert, l.ServerKey, LoadOptions{Key: KeyOptions{Passphrase: passphrase("ca pw")}}); !errors.Is(err, ErrIncorrectPassphrase) || !strings.Contains(err.Error(), "server.key") {
		t.Errorf("wrong passphrase: got %v, want ErrIncorrectPassphrase naming server.key", err)
	}
	if _, err := LoadPair(l.ServerCert, l.ServerKey, LoadOptions{Key: KeyOptions{Passphrase: passphrase("server pw")}}); err != nil {
		t.Error(err)
	}
	// Rotate with promotion re-encrypts the fresh next key.
	res, err := Rotate(context.Background(), RotateOptions{CertPath: l.ServerCert, PromoteNext: true,
		KeyPassphrase: passphrase("server pw"), IssuerKeyPassphrase: passphrase("ca pw")})
	if err != nil {
		t.Fatal(err)
	}
	next, err := ReadKeyFile(l.NextKey, KeyOptions{Passphrase: passphrase("server pw")})
	if err != nil || !next.Encrypted || !samePublicKey(next.Signer.Public(), res.NextKey) {
		t.Errorf("fresh next key: got %+v, %v; want it encrypted with the same passphrase", next, err)
	}
}

func TestRotate(t *testing.T) {
	tests := []struct {
		name       string
		selfSigned bool
		promote    bool
		validity   time.Duration
	}{
		{"CA layout keep key", false, false, 0},
		{"CA layout promote next", false, true, 0},
		{"self-signed keep key", true, false, 0},
		{"self-signed promote next", true, true, 0},
		{"CA layout new validity", false, false, 48 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustInit(t, InitOptions{SelfSigned: tt.selfSigned, Validity: 30 * 24 * time.Hour, DNSNames: []string{"a.example", "b.example"}})
			l := r.Layout
			oldNext := r.NextKey
			res, err := Rotate(context.Background(), RotateOptions{CertPath: l.ServerCert, PromoteNext: tt.promote, Validity: tt.validity})
			if err != nil {
				t.Fatal(err)
			}
			newCert := mustReadCert(t, l.ServerCert)
			if !bytes.Equal(newCert.Raw, res.New.Raw) || newCert.SerialNumber.Cmp(r.Server.SerialNumber) == 0 {
				t.Error("server.crt: want the new certificate with a new serial")
			}
			if !bytes.Equal(newCert.RawSubject, r.Server.RawSubject) || strings.Join(newCert.DNSNames, ",") != "a.example,b.example" {
				t.Errorf("subject/SANs changed: %v %v", newCert.Subject, newCert.DNSNames)
			}
			wantLen := r.Server.NotAfter.Sub(r.Server.NotBefore)
			if tt.validity != 0 {
				wantLen = tt.validity + backdate
			}
			if got := newCert.NotAfter.Sub(newCert.NotBefore); got != wantLen {
				t.Errorf("validity: got %v, want %v", got, wantLen)
			}
			p, err := LoadPair(l.ServerCert, l.ServerKey, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			sameKey := samePublicKey(p.Leaf().PublicKey, r.Server.PublicKey)
			if sameKey == tt.promote {
				t.Errorf("key kept: got %v, want %v", sameKey, !tt.promote)
			}
			if tt.promote {
				if !samePublicKey(p.Leaf().PublicKey, oldNext) {
					t.Error("promoted key is not the old next key")
				}
				next, err := ReadKeyFile(l.NextKey, KeyOptions{})
				if err != nil || samePublicKey(next.Signer.Public(), oldNext) || !samePublicKey(next.Signer.Public(), res.NextKey) {
					t.Error("want a fresh next key")
				}
			}
			ca := mustReadCert(t, l.CACert)
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			if _, err := newCert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "a.example"}); err != nil {
				t.Errorf("new server.crt does not verify against ca.crt: %v", err)
			}
			if tt.selfSigned != (res.CACopy != "") || tt.selfSigned != (res.Issuer == nil) {
				t.Errorf("CACopy %q, Issuer %v for self-signed=%v", res.CACopy, res.Issuer != nil, tt.selfSigned)
			}
			assertNoLeftovers(t, l.Dir)
		})
	}
}

func TestRotateIssuerErrors(t *testing.T) {
	t.Run("offline CA", func(t *testing.T) {
		r := mustInit(t, InitOptions{})
		l := r.Layout
		offline := t.TempDir()
		for _, f := range []string{CACertFile, CAKeyFile} {
			if err := os.Rename(filepath.Join(l.Dir, f), filepath.Join(offline, f)); err != nil {
				t.Fatal(err)
			}
		}
		_, err := Rotate(context.Background(), RotateOptions{CertPath: l.ServerCert})
		var ie *IssuerError
		if !errors.Is(err, ErrIssuerKeyMissing) || !errors.As(err, &ie) || ie.Missing != l.CACert || ie.CertPath != l.ServerCert {
			t.Fatalf("without the CA: got %v, want an *IssuerError missing %s, wrapping ErrIssuerKeyMissing", err, l.CACert)
		}
		// The library names files, not the flags of a command (issue 13).
		if strings.Contains(err.Error(), "--") {
			t.Errorf("got %q: a command's flag in a library error", err)
		}
		res, err := Rotate(context.Background(), RotateOptions{CertPath: l.ServerCert,
			IssuerCertPath: filepath.Join(offline, CACertFile), IssuerKeyPath: filepath.Join(offline, CAKeyFile)})
		if err != nil {
			t.Fatal(err)
		}
		if err := res.New.CheckSignatureFrom(r.CA); err != nil {
			t.Errorf("not signed by the offline CA: %v", err)
		}
	})
	t.Run("CA key missing", func(t *testing.T) {
		r := mustInit(t, InitOptions{})
		os.Remove(r.Layout.CAKey)
		_, err := Rotate(context.Background(), RotateOptions{CertPath: r.Layout.ServerCert})
		var ie *IssuerError
		if !errors.Is(err, ErrIssuerKeyMissing) || !errors.As(err, &ie) || ie.Missing != r.Layout.CAKey || !strings.Contains(err.Error(), "ca.key") {
			t.Errorf("got %v, want an *IssuerError missing %s, wrapping ErrIssuerKeyMissing", err, r.Layout.CAKey)
		}
	})
	t.Run("wrong CA", func(t *testing.T) {
		r := mustInit(t, InitOptions{})
		other := mustInit(t, InitOptions{})
		_, err := Rotate(context.Background(), RotateOptions{CertPath: r.Layout.ServerCert,
			IssuerCertPath: other.Layout.CACert, IssuerKeyPath: other.Layout.CAKey})
		var ie *IssuerError
		if !errors.Is(err, ErrNotIssuer) || !errors.As(err, &ie) || ie.Missing != "" || ie.IssuerCertPath != other.Layout.CACert {
			t.Errorf("got %v, want an *IssuerError naming %s, wrapping ErrNotIssuer", err, other.Layout.CACert)
		}
	})
	t.Run("mismatched current pair", func(t *testing.T) {
		r := mustInit(t, InitOptions{})
		if err := os.Rename(r.Layout.NextKey, r.Layout.ServerKey); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, r.Layout)
		_, err := Rotate(context.Background(), RotateOptions{CertPath: r.Layout.ServerCert})
		if !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("got %v, want ErrKeyMismatch", err)
		}
		if !snapshot(t, r.Layout).equal(before) {
			t.Error("failed rotation changed files")
		}
	})
	t.Run("OnlyIf declines", func(t *testing.T) {
		r := mustInit(t, InitOptions{})
		before := snapshot(t, r.Layout)
		res, err := Rotate(context.Background(), RotateOptions{CertPath: r.Layout.ServerCert,
			OnlyIf: func(c *x509.Certificate) bool { return c.SerialNumber.Sign() < 0 }})
		if err != nil || !res.Skipped || !snapshot(t, r.Layout).equal(before) {
			t.Errorf("got %+v, %v; want skipped and nothing changed", res, err)
		}
	})
}

// TestRotateInterruptedAtEveryStep kills the change after each durable step
// (simulated: the operation stops dead, cleaning nothing up), runs Recover
// as the next process would, and checks the directory holds the complete old
// set (crash before the commit point) or the complete new set (after it).
func TestRotateInterruptedAtEveryStep(t *testing.T) {
	modes := []struct {
		name       string
		selfSigned bool
		promote    bool
	}{
		{"CA keep key", false, false},
		{"CA promote", false, true},
		{"self-signed keep key", true, false},
		{"self-signed promote", true, true},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			for crashAt := 0; ; crashAt++ {
				r := mustInit(t, InitOptions{SelfSigned: m.selfSigned})
				l := r.Layout
				old := snapshot(t, l)
				var steps []string
				var staged fileSet // the new set, as journaled at the commit point
				committed := false
				hook := func(step string) bool {
					steps = append(steps, step)
					if step == "journal commit" {
						committed = true
						staged = journaledSet(t, l.Dir)
					}
					return len(steps)-1 == crashAt
				}
				_, err := Rotate(context.Background(), RotateOptions{CertPath: l.ServerCert, PromoteNext: m.promote, hook: hook})
				crashed := errors.Is(err, errSimulatedCrash)
				if err != nil && !crashed {
					t.Fatal(err)
				}
				if crashed && crashAt != len(steps)-1 {
					t.Fatalf("crashed at step %d, want %d", len(steps)-1, crashAt)
				}
				if err := Recover(context.Background(), l.Dir); err != nil {
					t.Fatalf("crash after %q: recover: %v", steps[len(steps)-1], err)
				}
				got := snapshot(t, l)
				switch {
				case !committed:
					if !got.equal(old) {
						t.Errorf("crash after %q (before commit): want the old set, got changes in %v", steps[len(steps)-1], got.diff(old))
					}
				default:
					for path, sum := range staged {
						if got[path] != sum {
							t.Errorf("crash after %q (after commit): %s is not the new file", steps[len(steps)-1], path)
						}
					}
					if got.equal(old) {
						t.Errorf("crash after %q: nothing changed", steps[len(steps)-1])
					}
				}
				// Either way the set is consistent and loads.
				if _, err := LoadPair(l.ServerCert, l.ServerKey, LoadOptions{}); err != nil {
					t.Errorf("crash after %q: %v", steps[len(steps)-1], err)
				}
				if m.selfSigned && got[l.CACert] != got[l.ServerCert] {
					t.Errorf("crash after %q: ca.crt is not a copy of server.crt", steps[len(steps)-1])
				}
				assertNoLeftovers(t, l.Dir)
				if !crashed {
					t.Logf("%d steps: %s", len(steps), strings.Join(steps, ", "))
					if crashAt < 4 {
						t.Fatalf("only %d steps", crashAt)
					}
					break
				}
			}
		})
	}
}

func TestInitInterruptedAtEveryStep(t *testing.T) {
	for crashAt := 0; ; crashAt++ {
		dir := filepath.Join(t.TempDir(), "certs")
		n := 0
		committed := false
		_, err := InitLayout(context.Background(), InitOptions{Dir: dir, hook: func(step string) bool {
			committed = committed || step == "journal commit"
			n++
			return n-1 == crashAt
		}})
		if err != nil && !errors.Is(err, errSimulatedCrash) {
			t.Fatal(err)
		}
		if err := Recover(context.Background(), dir); err != nil {
			t.Fatal(err)
		}
		l := DefaultLayout(dir)
		var present int
		for _, f := range []string{l.CACert, l.CAKey, l.ServerCert, l.ServerKey, l.NextKey} {
			if _, err := os.Stat(f); err == nil {
				present++
			}
		}
		if want := map[bool]int{false: 0, true: 5}[committed]; present != want {
			t.Errorf("crash at step %d: %d files present, want %d", crashAt, present, want)
		}
		assertNoLeftovers(t, dir)
		if err == nil {
			break
		}
	}
}

// A failure while staging (here: the key's directory is gone, as on a full
// or broken disk) undoes the change at once and leaves the old files whole.
func TestRotateStagingFailureKeepsOldSet(t *testing.T) {
	r := mustInit(t, InitOptions{})
	l := r.Layout
	old := snapshot(t, l)
	hook := func(step string) bool {
		if step == "journal prepare" {
			// Make staging of the next key fail: a directory where the
			// staged file must go.
			if err := os.Mkdir(stagedPath(l.NextKey), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		return false
	}
	_, err := Rotate(context.Background(), RotateOptions{CertPath: l.ServerCert, PromoteNext: true, hook: hook})
	if err == nil || !strings.Contains(err.Error(), "staging") {
		t.Fatalf("got %v, want a staging error", err)
	}
	os.Remove(stagedPath(l.NextKey))
	if got := snapshot(t, l); !got.equal(old) {
		t.Errorf("files changed: %v", got.diff(old))
	}
	assertNoLeftovers(t, l.Dir)
}

// Concurrent rotations of one directory (several server instances renewing
// at once) serialise under the lock: every one succeeds and the directory
// ends with one consistent pair.
func TestConcurrentRotations(t *testing.T) {
	r := mustInit(t, InitOptions{})
	l := r.Layout
	const n = 8
	var wg sync.WaitGroup
	serials := make(chan string, n)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := Rotate(context.Background(), RotateOptions{CertPath: l.ServerCert, PromoteNext: i%2 == 0})
			if err != nil {
				errs <- err
				return
			}
			serials <- res.New.SerialNumber.String()
		}()
	}
	wg.Wait()
	close(errs)
	close(serials)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	for s := range serials {
		if seen[s] {
			t.Errorf("serial %s issued twice", s)
		}
		seen[s] = true
	}
	if len(seen) != n {
		t.Errorf("got %d rotations, want %d", len(seen), n)
	}
	if _, err := LoadPair(l.ServerCert, l.ServerKey, LoadOptions{}); err != nil {
		t.Error(err)
	}
	assertNoLeftovers(t, l.Dir)
}

// A held lock makes Rotate wait until its context ends.
func TestRotateWaitsForLock(t *testing.T) {
	r := mustInit(t, InitOptions{})
	unlock, err := lockDir(context.Background(), r.Layout.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = Rotate(ctx, RotateOptions{CertPath: r.Layout.ServerCert})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), lockFileName) {
		t.Errorf("got %v, want a deadline error naming the lock file", err)
	}
}

func mustInit(t testing.TB, opts InitOptions) *InitResult {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "certs")
	}
	r, err := InitLayout(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fileSet maps a path to a digest of its content ("" when absent).
type fileSet map[string]string

func snapshot(t *testing.T, l Layout) fileSet {
	t.Helper()
	s := fileSet{}
	for _, p := range []string{l.CACert, l.CAKey, l.ServerCert, l.ServerKey, l.NextKey} {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		if err == nil {
			s[p] = digest(b)
		} else {
			s[p] = ""
		}
	}
	return s
}

func (s fileSet) equal(o fileSet) bool { return len(s.diff(o)) == 0 }

func (s fileSet) diff(o fileSet) []string {
	var d []string
	for p, v := range s {
		if o[p] != v {
			d = append(d, filepath.Base(p))
		}
	}
	return d
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// journaledSet reads the journal at the commit point: the new content of
// each target.
func journaledSet(t *testing.T, dir string) fileSet {
	t.Helper()
	var j journal
	if err := json.Unmarshal(mustRead(t, filepath.Join(dir, journalFileName)), &j); err != nil {
		t.Fatal(err)
	}
	s := fileSet{}
	for _, f := range j.Files {
		s[filepath.Join(dir, f.Target)] = f.SHA256
	}
	return s
}

func assertNoLeftovers(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, stagedSuffix) || n == journalFileName || strings.Contains(n, ".tmp-") {
			t.Errorf("left behind: %s", n)
		}
	}
}
