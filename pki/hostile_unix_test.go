//go:build unix

package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reloadWithin runs a Reload of the source and fails the test if it does
// not return within a generous bound (it used to block forever on a FIFO).
func reloadWithin(t *testing.T, src *CertReloader) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- src.Reload() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Reload did not return within 20s")
	}
	return nil
}

// keepsServing checks that the source still serves cert after a refused
// reload.
func keepsServing(t *testing.T, e *srcEnv, cert *x509.Certificate) {
	t.Helper()
	if !serving(e.src, cert) {
		t.Fatalf("the source no longer serves serial %s", SerialHex(cert.SerialNumber))
	}
	mustServe(t, e.srv.addr, e.d.roots, cert)
}

// Hostile or broken files at the certificate, key and next key paths are
// refused at once with an error that says what they are, and the old pair
// keeps serving (issue 12: a FIFO hung the reload forever, /dev/zero
// exhausted memory).
func TestCertReloaderRefusesHostileFiles(t *testing.T) {
	tests := []struct {
		name    string
		file    func(l Layout) string
		plant   func(t *testing.T, path string)
		wantErr error
		says    string
	}{
		{"FIFO at the certificate", func(l Layout) string { return l.ServerCert }, func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}, ErrNotRegularFile, "FIFO"},
		{"FIFO at the key", func(l Layout) string { return l.ServerKey }, func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrNotRegularFile, "FIFO"},
		{"/dev/zero at the key", func(l Layout) string { return l.ServerKey }, func(t *testing.T, p string) {
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
		}, ErrNotRegularFile, "character device"},
		{"oversize certificate", func(l Layout) string { return l.ServerCert }, func(t *testing.T, p string) {
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(470 << 20); err != nil {
				t.Fatal(err)
			}
		}, ErrFileTooLarge, "at most 1 MiB"},
		{"FIFO at the next key", func(l Layout) string { return l.NextKey }, func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrNotRegularFile, "FIFO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newCertDir(t, InitOptions{})
			e := startSource(t, d, false, func(o *CertReloaderOptions) { o.Key.RequirePrivateFile = true })
			cur := e.src.State().Certificate
			next := e.src.State().NextSPKI
			p := tt.file(d.l)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			tt.plant(t, p)
			err := reloadWithin(t, e.src)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), p) {
				t.Fatalf("got %v, want %v naming %s and saying %q", err, tt.wantErr, p, tt.says)
			}
			keepsServing(t, e, cur)
			if !bytes.Equal(e.src.State().NextSPKI, next) {
				t.Error("the announced next key changed")
			}
		})
	}
}

// A chain of more certificates than a server ever needs is refused at
// load, like any bad file.
func TestChainTooLongRefused(t *testing.T) {
	d := newCertDir(t, InitOptions{})
	leaf := mustReadCert(t, d.l.ServerCert)
	chain := []*x509.Certificate{leaf}
	for range maxChainCertificates {
		chain = append(chain, d.ca)
	}
	mustWrite(t, d.l.ServerCert, EncodeCertificatesPEM(chain...), 0o644)
	_, err := LoadPair(d.l.ServerCert, d.l.ServerKey, LoadOptions{})
	if !errors.Is(err, ErrChainTooLong) {
		t.Errorf("LoadPair: got %v, want ErrChainTooLong", err)
	}
	_, err = NewCertReloader(CertReloaderOptions{CertPath: d.l.ServerCert, KeyPath: d.l.ServerKey})
	if !errors.Is(err, ErrChainTooLong) {
		t.Errorf("NewCertReloader: got %v, want ErrChainTooLong", err)
	}
	// Within the limit it loads.
	mustWrite(t, d.l.ServerCert, EncodeCertificatesPEM(chain[:maxChainCertificates]...), 0o644)
	if _, err := LoadPair(d.l.ServerCert, d.l.ServerKey, LoadOptions{}); err != nil {
		t.Errorf("a chain of %d: %v", maxChainCertificates, err)
	}
}

const nobodyUID = 65534

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test chowns files and needs root, which CI has")
		}
		t.Skip("needs root to chown files")
	}
}

// A next key planted by another local user is never announced: not
// through a certificate directory others may write to, not as a file
// another user owns, not as a symbolic link to another user's 0600 file
// (issue 12: the server announced the attacker's next pin, and TOFU clients
// recorded it).
func TestCertReloaderRefusesPlantedNextKey(t *testing.T) {
	tests := []struct {
		name    string
		root    bool
		plant   func(t *testing.T, d *certDir, attacker []byte)
		wantErr error
		says    string
	}{
		{"certs directory writable by others", false, func(t *testing.T, d *certDir, k []byte) {
			if err := os.Chmod(d.l.Dir, 0o777); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, d.l.NextKey, k, 0o600)
		}, ErrFileWritable, "chmod go-w"},
		{"next key owned by another user", true, func(t *testing.T, d *certDir, k []byte) {
			mustWrite(t, d.l.NextKey, k, 0o600)
			if err := os.Chown(d.l.NextKey, nobodyUID, nobodyUID); err != nil {
				t.Fatal(err)
			}
		}, ErrFileOwner, "uid 65534"},
		{"symlink to another user's 0600 file", true, func(t *testing.T, d *certDir, k []byte) {
			elsewhere := filepath.Join(t.TempDir(), "mine.key")
			mustWrite(t, elsewhere, k, 0o600)
			if err := os.Chown(elsewhere, nobodyUID, nobodyUID); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(d.l.NextKey); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(elsewhere, d.l.NextKey); err != nil {
				t.Fatal(err)
			}
		}, ErrFileOwner, "uid 65534"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root {
				needRoot(t)
			}
			d := newCertDir(t, InitOptions{})
			e := startSource(t, d, false, func(o *CertReloaderOptions) { o.Key.RequirePrivateFile = true })
			before := e.src.State().NextSPKI
			tt.plant(t, d, keyPEM(t, mustKey(t, KeyECDSAP256)))
			err := reloadWithin(t, e.src)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("got %v, want %v saying %q", err, tt.wantErr, tt.says)
			}
			if !bytes.Equal(e.src.State().NextSPKI, before) {
				t.Fatal("the planted next key is announced")
			}
			// rotate --promote-next refuses to make it the server's key.
			_, err = Rotate(context.Background(), RotateOptions{CertPath: d.l.ServerCert, PromoteNext: true})
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Rotate --promote-next: got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// Swapped certificate and key paths are diagnosed as swapped by the
// source, as sc-cert verify does, not as a key file with the wrong mode
// (issue 12).
func TestCertReloaderDiagnosesSwappedPaths(t *testing.T) {
	d := newCertDir(t, InitOptions{})
	_, err := NewCertReloader(CertReloaderOptions{CertPath: d.l.ServerKey, KeyPath: d.l.ServerCert, Key: KeyOptions{RequirePrivateFile: true}})
	if err == nil || !strings.Contains(err.Error(), "swapped") || errors.Is(err, ErrKeyFilePermissions) {
		t.Errorf("NewCertReloader: got %v, want the swapped-paths diagnosis", err)
	}
	_, err = LoadPair(d.l.ServerKey, d.l.ServerCert, LoadOptions{Key: KeyOptions{RequirePrivateFile: true}})
	if err == nil || !strings.Contains(err.Error(), "swapped") || errors.Is(err, ErrKeyFilePermissions) {
		t.Errorf("LoadPair: got %v, want the swapped-paths diagnosis", err)
	}
	// A certificate given as the key alone (0644) is a certificate, not a
	// leaked key.
	_, err = ReadKeyFile(d.l.ServerCert, KeyOptions{RequirePrivateFile: true})
	if err == nil || !strings.Contains(err.Error(), "swapped") || errors.Is(err, ErrKeyFilePermissions) {
		t.Errorf("ReadKeyFile: got %v, want the swapped-paths diagnosis", err)
	}
}

// The CA key a server would renew with is loaded when the renewer is
// made, so that a CA key nobody can use fails at start, not at the first
// renewal (issue 12: a garbage ca.key passed --check and start silently).
func TestRenewerLoadsCAKeyAtStart(t *testing.T) {
	tests := []struct {
		name string
		edit func(t *testing.T, l Layout)
		ok   bool
	}{
		{"good", func(*testing.T, Layout) {}, true},
		{"garbage", func(t *testing.T, l Layout) { mustWrite(t, l.CAKey, []byte("garbage\n"), 0o600) }, false},
		{"another CA's key", func(t *testing.T, l Layout) { mustWrite(t, l.CAKey, keyPEM(t, mustKey(t, KeyECDSAP256)), 0o600) }, false},
		{"readable by others", func(t *testing.T, l Layout) { os.Chmod(l.CAKey, 0o644) }, false},
		{"missing: warnings only", func(t *testing.T, l Layout) { os.Remove(l.CAKey) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newCertDir(t, InitOptions{})
			tt.edit(t, d.l)
			_, err := NewRenewer(RenewerOptions{CertPath: d.l.ServerCert})
			if tt.ok != (err == nil) {
				t.Errorf("got %v, want ok=%v", err, tt.ok)
			}
			if _, err := NewRenewer(RenewerOptions{CertPath: d.l.ServerCert, Disabled: true}); err != nil {
				t.Errorf("renewal disabled: %v", err)
			}
		})
	}
}

// The temporary files of journal writes that a kill interrupted are
// removed by the next change that takes the lock (issue 12: 110 random
// kills left 7), and Pending looks without writing.
func TestRecoverRemovesStaleJournalTemps(t *testing.T) {
	d := newCertDir(t, InitOptions{})
	stale := filepath.Join(d.l.Dir, "."+journalFileName+".tmp-12345")
	mustWrite(t, stale, []byte("{"), 0o600)
	journal := filepath.Join(d.l.Dir, journalFileName)
	mustWrite(t, journal, []byte(`{"version":1,"state":"prepare","files":[]}`+"\n"), 0o600)
	if p, err := Pending(d.l.Dir); err != nil || !p {
		t.Fatalf("Pending: got %v, %v; want true", p, err)
	}
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("Pending changed the directory: %v", err)
	}
	if _, err := Rotate(context.Background(), RotateOptions{CertPath: d.l.ServerCert}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{stale, journal} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there after a rotation took the lock", p)
		}
	}
	if p, err := Pending(d.l.Dir); err != nil || p {
		t.Errorf("Pending after recovery: got %v, %v; want false", p, err)
	}
}

// rotate's key defaults to the certificate's sibling, and missing files
// are said plainly rather than as a lock file that cannot be made (issue
// 12).
func TestRotateDefaultKeyIsSibling(t *testing.T) {
	dir := t.TempDir()
	key := mustKey(t, KeyECDSAP256)
	cert := mustSelfSigned(t, key, CertOptions{})
	mustWrite(t, filepath.Join(dir, "game.crt"), EncodeCertificatesPEM(cert), 0o644)
	if err := WriteKeyFile(filepath.Join(dir, "game.key"), key, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(context.Background(), RotateOptions{CertPath: filepath.Join(dir, "game.crt")}); err != nil {
		t.Errorf("game.crt with game.key beside it: %v", err)
	}
	missing := filepath.Join(dir, "nosuch", "server.crt")
	_, err := Rotate(context.Background(), RotateOptions{CertPath: missing})
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) || pe.Path != missing || strings.Contains(err.Error(), "lock") {
		t.Errorf("missing directory: got %v, want an *fs.PathError for %s", err, missing)
	}
	if got := SiblingKeyPath("certs/server.crt"); got != "certs/server.key" {
		t.Errorf("SiblingKeyPath: got %s, want certs/server.key", got)
	}
}
