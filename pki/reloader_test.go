package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// srcEnv is a running CertReloader behind a TLS server.
type srcEnv struct {
	t   *testing.T
	d   *certDir
	rec *recorder
	src *CertReloader
	srv *tlsServer
}

// startSource serves d's layout through a CertReloader (Run in the background
// when run is set) and a TLS server.
func startSource(t *testing.T, d *certDir, run bool, edit func(*CertReloaderOptions)) *srcEnv {
	t.Helper()
	e := &srcEnv{t: t, d: d, rec: newRecorder(t)}
	opts := CertReloaderOptions{
		CertPath:    d.l.ServerCert,
		KeyPath:     d.l.ServerKey,
		NextKeyPath: d.l.NextKey,
		Logger:      e.rec.logger(),
		OnReload:    e.rec.onReload,
	}
	if edit != nil {
		edit(&opts)
	}
	src, err := NewCertReloader(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.src = src
	if run {
		runInBackground(t, src.Run)
		e.rec.waitWatching()
	}
	e.srv = startTLSServer(t, serverConfig(src.GetCertificate))
	return e
}

// waitServing waits until the source serves cert, then checks a real
// handshake is served it.
func (e *srcEnv) waitServing(cert *x509.Certificate) {
	e.t.Helper()
	e.rec.waitFor("serial "+SerialHex(cert.SerialNumber), func() bool { return serving(e.src, cert) })
	mustServe(e.t, e.srv.addr, e.d.roots, cert)
}

// newCertOnKey returns a fresh CA-issued certificate for the current key,
// as PEM, and the certificate.
func (d *certDir) newCertOnKey(edit func(*CertOptions)) (*x509.Certificate, []byte) {
	d.t.Helper()
	c := d.issue(d.key(d.l.ServerKey), edit)
	return c, EncodeCertificatesPEM(c)
}

// rotationPath is one way an operator or a tool replaces the files. It
// returns the certificate that should be served afterwards.
type rotationPath struct {
	name string
	do   func(t *testing.T, e *srcEnv) *x509.Certificate
}

func rotationPaths() []rotationPath {
	return []rotationPath{
		{"keep-key rotate", func(t *testing.T, e *srcEnv) *x509.Certificate {
			res, err := Rotate(context.Background(), RotateOptions{CertPath: e.d.l.ServerCert})
			mustNoErr(t, err)
			return res.New
		}},
		{"promote-next", func(t *testing.T, e *srcEnv) *x509.Certificate {
			res, err := Rotate(context.Background(), RotateOptions{CertPath: e.d.l.ServerCert, PromoteNext: true})
			mustNoErr(t, err)
			return res.New
		}},
		{"mv over", func(t *testing.T, e *srcEnv) *x509.Certificate {
			// Made elsewhere, then moved in: rename(2) across directories
			// of one filesystem, as mv does.
			c, data := e.d.newCertOnKey(nil)
			staged := filepath.Join(t.TempDir(), "new.crt")
			mustNoErr(t, os.WriteFile(staged, data, 0o644))
			mustNoErr(t, os.Rename(staged, e.d.l.ServerCert))
			return c
		}},
		{"editor rename", func(t *testing.T, e *srcEnv) *x509.Certificate {
			// Write a temporary file beside the target, rename it over.
			c, data := e.d.newCertOnKey(nil)
			tmp := filepath.Join(e.d.l.Dir, ".server.crt.swp")
			mustNoErr(t, os.WriteFile(tmp, data, 0o644))
			mustNoErr(t, os.Rename(tmp, e.d.l.ServerCert))
			return c
		}},
		{"editor backup then write", func(t *testing.T, e *srcEnv) *x509.Certificate {
			// vim's default: rename the original to a backup, write a new
			// file under the name, remove the backup.
			c, data := e.d.newCertOnKey(nil)
			backup := e.d.l.ServerCert + "~"
			mustNoErr(t, os.Rename(e.d.l.ServerCert, backup))
			mustNoErr(t, os.WriteFile(e.d.l.ServerCert, data, 0o644))
			mustNoErr(t, os.Remove(backup))
			return c
		}},
		{"delete then create", func(t *testing.T, e *srcEnv) *x509.Certificate {
			c, data := e.d.newCertOnKey(nil)
			mustNoErr(t, os.Remove(e.d.l.ServerCert))
			mustNoErr(t, os.WriteFile(e.d.l.ServerCert, data, 0o644))
			return c
		}},
		{"in-place rewrite", func(t *testing.T, e *srcEnv) *x509.Certificate {
			c, data := e.d.newCertOnKey(nil)
			writeInPieces(t, e.d.l.ServerCert, data, 4)
			return c
		}},
		{"new key and certificate moved in", func(t *testing.T, e *srcEnv) *x509.Certificate {
			// A key the clients have never seen: key first, then the
			// certificate (the pair mismatches in between and is refused
			// until the certificate arrives).
			k := mustKey(t, KeyECDSAP256)
			c := e.d.issue(k, nil)
			staged := t.TempDir()
			mustNoErr(t, os.WriteFile(filepath.Join(staged, "k"), keyPEM(t, k), 0o600))
			mustNoErr(t, os.WriteFile(filepath.Join(staged, "c"), EncodeCertificatesPEM(c), 0o644))
			mustNoErr(t, os.Rename(filepath.Join(staged, "k"), e.d.l.ServerKey))
			mustNoErr(t, os.Rename(filepath.Join(staged, "c"), e.d.l.ServerCert))
			return c
		}},
	}
}

// Every way of replacing the files is picked up by the watcher, served to
// new handshakes, and logged at Info with the serial and pin; none warns.
func TestCertReloaderRotationPaths(t *testing.T) {
	for _, r := range rotationPaths() {
		t.Run(r.name, func(t *testing.T) {
			e := startSource(t, newCertDir(t, InitOptions{}), true, nil)
			old := e.src.State()
			mustServe(t, e.srv.addr, e.d.roots, old.Certificate)
			want := r.do(t, e)
			e.waitServing(want)
			st := e.src.State()
			if st.Generation <= old.Generation {
				t.Errorf("generation: got %d, want more than %d", st.Generation, old.Generation)
			}
			found := false
			for _, l := range e.rec.records(slog.LevelInfo) {
				if l.msg == "certificate reloaded" && l.attrs["serial"] == SerialHex(want.SerialNumber) {
					found = true
					if l.attrs["pin"] != spkiPin(want.RawSubjectPublicKeyInfo) || l.attrs["not_after"] == "" || l.attrs["path"] != e.d.l.ServerCert {
						t.Errorf("reload log line: got %v, want the path, pin and not_after", l)
					}
				}
			}
			if !found {
				t.Error("no Info log line for the new certificate")
			}
			if w := e.rec.records(slog.LevelWarn); len(w) > 0 {
				t.Errorf("a good rotation logged warnings: %v", w)
			}
		})
	}
}

// Promoting the next key announces the new next key, and the certificate
// for the old next key passes a CLI-style "current or next pin" hook: the
// source judges the certificate before it reloads the next key.
func TestCertReloaderPromoteNextWithPinHook(t *testing.T) {
	d := newCertDir(t, InitOptions{})
	var src atomic.Pointer[CertReloader]
	e := startSource(t, d, true, func(o *CertReloaderOptions) {
		o.Accept = func(leaf *x509.Certificate) error {
			s := src.Load()
			if s == nil {
				return nil // the initial load, inside NewCertReloader
			}
			st := s.State()
			if bytes.Equal(leaf.RawSubjectPublicKeyInfo, st.Certificate.RawSubjectPublicKeyInfo) ||
				bytes.Equal(leaf.RawSubjectPublicKeyInfo, st.NextSPKI) {
				return nil
			}
			return errRefused
		}
	})
	src.Store(e.src)
	for i := range 3 {
		before := e.src.State()
		res, err := Rotate(context.Background(), RotateOptions{CertPath: d.l.ServerCert, PromoteNext: true})
		mustNoErr(t, err)
		e.waitServing(res.New)
		if !bytes.Equal(res.New.RawSubjectPublicKeyInfo, before.NextSPKI) {
			t.Fatalf("promotion %d: the new certificate is not on the announced next key", i)
		}
		e.rec.waitFor("the new next key", func() bool {
			nk := e.src.State().NextKey
			return nk != nil && samePublicKey(nk, res.NextKey)
		})
	}
	// A key nobody announced is refused by the hook, and said so.
	k := mustKey(t, KeyECDSAP256)
	c := d.issue(k, nil)
	mustNoErr(t, WriteKeyFile(d.l.ServerKey, k, WriteOptions{Overwrite: true}))
	mustNoErr(t, WriteCertificatesFile(d.l.ServerCert, []*x509.Certificate{c}, WriteOptions{Overwrite: true}))
	e.rec.waitFor("a warning about the refused certificate", func() bool {
		for _, w := range e.rec.records(slog.LevelWarn) {
			if strings.Contains(w.attrs["err"], errRefused.Error()) {
				return true
			}
		}
		return false
	})
	if serving(e.src, c) {
		t.Error("the hook refused the certificate, but it is served")
	}
}

// A Kubernetes secret volume: the files are symlinks through "..data",
// and an update swaps that symlink; the events name "..data", never the
// files.
func TestCertReloaderSymlinkSwap(t *testing.T) {
	d := newCertDir(t, InitOptions{})
	names := map[string]string{"tls.crt": d.l.ServerCert, "tls.key": d.l.ServerKey, "next.key": d.l.NextKey}
	files := func() map[string][]byte {
		m := map[string][]byte{}
		for n, p := range names {
			m[n] = mustRead(t, p)
		}
		return m
	}
	k := newK8sDir(t, files())
	rec := newRecorder(t)
	src, err := NewCertReloader(CertReloaderOptions{
		CertPath:    filepath.Join(k.dir, "tls.crt"),
		KeyPath:     filepath.Join(k.dir, "tls.key"),
		NextKeyPath: filepath.Join(k.dir, "next.key"),
		Logger:      rec.logger(),
		OnReload:    rec.onReload,
	})
	mustNoErr(t, err)
	runInBackground(t, src.Run)
	rec.waitWatching()
	srv := startTLSServer(t, serverConfig(src.GetCertificate))
	g := startLoad(t, srv.addr, d.roots, 2)
	for i, promote := range []bool{false, true, false, true} {
		res, err := Rotate(context.Background(), RotateOptions{CertPath: d.l.ServerCert, PromoteNext: promote})
		mustNoErr(t, err)
		k.update(files())
		changed := time.Now()
		rec.waitFor(fmt.Sprintf("swap %d", i), func() bool {
			nk := src.State().NextKey
			return serving(src, res.New) && nk != nil && samePublicKey(nk, res.NextKey)
		})
		if l := g.waitSeen(t, SerialHex(res.New.SerialNumber)).Sub(changed); l > time.Second {
			t.Errorf("swap %d: the new certificate was first served after %v, want within 1s", i, l)
		}
		mustServe(t, srv.addr, d.roots, res.New)
	}
	g.halt()
	if len(g.errs) > 0 {
		t.Errorf("%d of %d handshakes failed during the swaps; first: %v", len(g.errs), g.ok+len(g.errs), g.errs[0])
	}
	if w := rec.records(slog.LevelWarn); len(w) > 0 {
		t.Errorf("symlink swaps logged warnings: %v", w)
	}
}

// Reload (SIGHUP) serves new files at once, without Run, and returns why
// it refused bad ones instead of logging it.
func TestCertReloaderReload(t *testing.T) {
	d := newCertDir(t, InitOptions{})
	e := startSource(t, d, false, nil)
	old := e.src.State().Certificate

	c, data := d.newCertOnKey(nil)
	mustNoErr(t, os.WriteFile(d.l.ServerCert, data, 0o644))
	mustNoErr(t, e.src.Reload())
	if !serving(e.src, c) {
		t.Fatal("Reload did not serve the new certificate")
	}
	mustServe(t, e.srv.addr, d.roots, c)

	// Unchanged files: nothing happens.
	gen := e.src.State().Generation
	mustNoErr(t, e.src.Reload())
	if got := e.src.State().Generation; got != gen {
		t.Errorf("reload of unchanged files: generation %d, want %d", got, gen)
	}

	other := d.issue(mustKey(t, KeyECDSAP256), nil)
	mustNoErr(t, os.WriteFile(d.l.ServerCert, EncodeCertificatesPEM(other), 0o644))
	err := e.src.Reload()
	if !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), d.l.ServerCert) {
		t.Fatalf("Reload of a mismatched pair: got %v, want ErrKeyMismatch naming the file", err)
	}
	if !serving(e.src, c) || serving(e.src, old) {
		t.Error("a refused reload changed what is served")
	}
	if w := e.rec.records(slog.LevelWarn); len(w) > 0 {
		t.Errorf("Reload logged its error as well as returning it: %v", w)
	}
	evs := e.rec.eventsSince(0)
	if last := evs[len(evs)-1]; last.Trigger != TriggerReload || last.Result != ReloadFailed || !errors.Is(last.Err, ErrKeyMismatch) || last.Recheck {
		t.Errorf("last OnReload event: got %+v, want a failed reload, not to be looked at again", last)
	}
}

// A bad rotation keeps the old pair serving, warns once with the file and
// the reason, and the next good rotation is picked up.
func TestCertReloaderBadRotations(t *testing.T) {
	type badCase struct {
		name    string
		opts    func(*CertReloaderOptions)
		bad     func(t *testing.T, d *certDir)
		undo    func(t *testing.T, d *certDir)
		wantErr string
	}
	cases := []badCase{
		{name: "certificate for another key", wantErr: "does not match", bad: func(t *testing.T, d *certDir) {
			c := d.issue(mustKey(t, KeyECDSAP256), nil)
			mustNoErr(t, os.WriteFile(d.l.ServerCert, EncodeCertificatesPEM(c), 0o644))
		}},
		{name: "key of another certificate", wantErr: "does not match", bad: func(t *testing.T, d *certDir) {
			mustNoErr(t, WriteKeyFile(d.l.ServerKey, mustKey(t, KeyECDSAP256), WriteOptions{Overwrite: true}))
		}},
		{name: "truncated PEM", wantErr: "malformed PEM", bad: func(t *testing.T, d *certDir) {
			_, data := d.newCertOnKey(nil)
			mustNoErr(t, os.WriteFile(d.l.ServerCert, data[:len(data)/2], 0o644))
		}},
		{name: "key file holding a certificate", wantErr: "swapped", bad: func(t *testing.T, d *certDir) {
			mustNoErr(t, os.WriteFile(d.l.ServerKey, mustRead(t, d.l.ServerCert), 0o600))
		}},
		{name: "expired certificate", wantErr: "expired", bad: func(t *testing.T, d *certDir) {
			_, data := d.newCertOnKey(func(o *CertOptions) {
				o.NotBefore, o.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
			})
			mustNoErr(t, os.WriteFile(d.l.ServerCert, data, 0o644))
		}},
		{name: "certificate not yet valid", wantErr: "not valid until", bad: func(t *testing.T, d *certDir) {
			_, data := d.newCertOnKey(func(o *CertOptions) {
				o.NotBefore, o.NotAfter = time.Now().Add(24*time.Hour), time.Now().Add(48*time.Hour)
			})
			mustNoErr(t, os.WriteFile(d.l.ServerCert, data, 0o644))
		}},
		{name: "unreadable file (a directory in its place)", wantErr: "not a regular file but a directory", bad: func(t *testing.T, d *certDir) {
			mustNoErr(t, os.Remove(d.l.ServerCert))
			mustNoErr(t, os.Mkdir(d.l.ServerCert, 0o755))
		}, undo: func(t *testing.T, d *certDir) {
			mustNoErr(t, os.Remove(d.l.ServerCert))
		}},
		{name: "missing key", wantErr: "no such file", bad: func(t *testing.T, d *certDir) {
			mustNoErr(t, os.Remove(d.l.ServerKey))
		}},
		{name: "key readable by others", wantErr: "others may read it; fix: chmod 600",
			opts: func(o *CertReloaderOptions) { o.Key.RequirePrivateFile = true },
			bad: func(t *testing.T, d *certDir) {
				mustNoErr(t, os.Chmod(d.l.ServerKey, 0o644))
			}, undo: func(t *testing.T, d *certDir) {
				mustNoErr(t, os.Chmod(d.l.ServerKey, 0o600))
			}},
		{name: "encrypted key without a passphrase", wantErr: "no passphrase", bad: func(t *testing.T, d *certDir) {
			mustNoErr(t, WriteKeyFile(d.l.ServerKey, d.key(d.l.ServerKey), WriteOptions{Passphrase: []byte("secret"), Overwrite: true}))
		}},
		{name: "refused by the accept hook", wantErr: errRefused.Error(),
			opts: func(o *CertReloaderOptions) {
				o.Accept = func(c *x509.Certificate) error {
					if c.Subject.CommonName == "refuse me" {
						return errRefused
					}
					return nil
				}
			},
			bad: func(t *testing.T, d *certDir) {
				_, data := d.newCertOnKey(func(o *CertOptions) { o.CommonName = "refuse me" })
				mustNoErr(t, os.WriteFile(d.l.ServerCert, data, 0o644))
			}},
	}
	if runtime.GOOS != "windows" && os.Geteuid() != 0 {
		cases = append(cases, badCase{name: "unreadable file (mode 000)", wantErr: "permission denied", bad: func(t *testing.T, d *certDir) {
			mustNoErr(t, os.Chmod(d.l.ServerCert, 0))
		}, undo: func(t *testing.T, d *certDir) {
			mustNoErr(t, os.Chmod(d.l.ServerCert, 0o644))
		}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newCertDir(t, InitOptions{})
			e := startSource(t, d, true, tc.opts)
			old := e.src.State().Certificate
			keyData := mustRead(t, d.l.ServerKey)

			tc.bad(t, d)
			var warning logRecord
			e.rec.waitFor("a warning", func() bool {
				w := e.rec.records(slog.LevelWarn)
				if len(w) > 0 {
					warning = w[0]
				}
				return len(w) > 0
			})
			if !strings.Contains(warning.attrs["err"], tc.wantErr) {
				t.Errorf("warning: got err %q, want it to mention %q", warning.attrs["err"], tc.wantErr)
			}
			if p := warning.attrs["path"]; p != d.l.ServerCert && p != d.l.ServerKey {
				t.Errorf("warning: got path %q, want the certificate's", p)
			}
			if !serving(e.src, old) {
				t.Fatal("a bad rotation replaced the served certificate")
			}
			mustServe(t, e.srv.addr, d.roots, old)

			// More events about the same bad files do not warn again.
			n := e.rec.eventCount()
			mustNoErr(t, os.WriteFile(filepath.Join(d.l.Dir, "unrelated"), nil, 0o644))
			e.rec.waitFor("a file event then a settle reload", func() bool {
				evs := e.rec.eventsSince(n)
				i := slices.IndexFunc(evs, func(ev ReloadEvent) bool { return ev.Trigger == TriggerFileEvent })
				return i >= 0 && slices.ContainsFunc(evs[i:], func(ev ReloadEvent) bool { return ev.Trigger == TriggerSettle })
			})
			if w := e.rec.records(slog.LevelWarn); len(w) != 1 {
				t.Errorf("got %d warnings, want 1: %v", len(w), w)
			}

			// The next good rotation is served.
			if tc.undo != nil {
				tc.undo(t, d)
			}
			mustNoErr(t, os.WriteFile(d.l.ServerKey, keyData, 0o600))
			mustNoErr(t, os.Chmod(d.l.ServerKey, 0o600))
			c, _ := d.newCertOnKey(nil)
			mustNoErr(t, WriteCertificatesFile(d.l.ServerCert, []*x509.Certificate{c}, WriteOptions{Overwrite: true}))
			e.waitServing(c)

			for _, bad := range []string{"PRIVATE KEY", "BEGIN"} {
				if strings.Contains(e.rec.allLogText(), bad) {
					t.Errorf("the logs contain %q", bad)
				}
			}
		})
	}
}

// A certificate caught half-written is refused (never served), and the
// rest of the write is picked up.
func TestCertReloaderHalfWrittenFile(t *testing.T) {
	d := newCertDir(t, InitOptions{})
	e := startSource(t, d, true, nil)
	old := e.src.State().Certificate
	c, data := d.newCertOnKey(nil)

	f, err := os.OpenFile(d.l.ServerCert, os.O_WRONLY|os.O_TRUNC, 0)
	mustNoErr(t, err)
	defer f.Close()
	n := e.rec.eventCount()
	_, err = f.Write(data[:len(data)/2])
	mustNoErr(t, err)
	e.rec.waitFor("a refused reload of the half-written file", func() bool {
		return slices.ContainsFunc(e.rec.eventsSince(n), func(ev ReloadEvent) bool { return ev.Result == ReloadFailed })
	})
	if !serving(e.src, old) {
		t.Fatal("a half-written certificate replaced the served one")
	}
	// A refusal right after a file event may be a file caught mid-write:
	// it is looked at again (and only a refusal then is one to count).
	for _, ev := range e.rec.eventsSince(n) {
		if ev.Result == ReloadFailed && ev.Recheck != (ev.Trigger == TriggerFileEvent) {
			t.Errorf("a refusal on trigger %s has Recheck %v, want it only after a file event", ev.Trigger, ev.Recheck)
		}
	}
	mustServe(t, e.srv.addr, d.roots, old)
	_, err = f.Write(data[len(data)/2:])
	mustNoErr(t, err)
	mustNoErr(t, f.Close())
	e.waitServing(c)
}

// Removing the certificate directory, or replacing it, is survived: the
// watch follows the new directory, as a later rotation in it shows.
func TestCertReloaderDirectoryReplaced(t *testing.T) {
	tests := []struct {
		name    string
		replace func(t *testing.T, dir string, files map[string][]byte)
	}{
		{"removed and recreated", func(t *testing.T, dir string, files map[string][]byte) {
			mustNoErr(t, os.RemoveAll(dir))
			mustNoErr(t, os.Mkdir(dir, 0o755))
			writeFiles(t, dir, files)
		}},
		{"renamed away, another renamed in", func(t *testing.T, dir string, files map[string][]byte) {
			staged := dir + ".new"
			mustNoErr(t, os.Mkdir(staged, 0o755))
			writeFiles(t, staged, files)
			mustNoErr(t, os.Rename(dir, dir+".old"))
			mustNoErr(t, os.Rename(staged, dir))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newCertDir(t, InitOptions{})
			e := startSource(t, d, true, nil)
			c, data := d.newCertOnKey(nil)
			files := map[string][]byte{}
			for _, p := range []string{d.l.CACert, d.l.CAKey, d.l.ServerKey, d.l.NextKey} {
				files[filepath.Base(p)] = mustRead(t, p)
			}
			files[ServerCertFile] = data
			tc.replace(t, d.l.Dir, files)
			e.waitServing(c)

			res, err := Rotate(context.Background(), RotateOptions{CertPath: d.l.ServerCert})
			mustNoErr(t, err)
			e.waitServing(res.New)
		})
	}
}

// A change no event reports — here the grandparent of the certificate
// directory is replaced, and only the periodic check notices.
func TestCertReloaderPeriodicCheck(t *testing.T) {
	root := t.TempDir()
	d := newCertDir(t, InitOptions{Dir: filepath.Join(root, "a", "certs")})
	e := startSource(t, d, true, func(o *CertReloaderOptions) { o.Interval = 100 * time.Millisecond })
	c, data := d.newCertOnKey(nil)
	staged := filepath.Join(root, "a.new", "certs")
	mustNoErr(t, os.MkdirAll(staged, 0o755))
	for _, p := range []string{d.l.ServerKey, d.l.NextKey} {
		mustNoErr(t, os.WriteFile(filepath.Join(staged, filepath.Base(p)), mustRead(t, p), 0o600))
	}
	mustNoErr(t, os.WriteFile(filepath.Join(staged, ServerCertFile), data, 0o644))
	mustNoErr(t, os.Rename(filepath.Join(root, "a"), filepath.Join(root, "a.old")))
	mustNoErr(t, os.Rename(filepath.Join(root, "a.new"), filepath.Join(root, "a")))
	e.waitServing(c)
	for _, ev := range e.rec.eventsSince(0) {
		if ev.Result == ReloadChanged && ev.State.Certificate.Equal(c) && ev.Trigger != TriggerPeriodic && ev.Trigger != TriggerRewatch {
			t.Errorf("the replaced grandparent was noticed by a %q reload, want the periodic check", ev.Trigger)
		}
	}

	// And the watch now follows the new directory.
	c2, data2 := d.newCertOnKey(nil)
	mustNoErr(t, os.WriteFile(d.l.ServerCert, data2, 0o644))
	e.waitServing(c2)
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		perm := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			perm = 0o600
		}
		mustNoErr(t, os.WriteFile(filepath.Join(dir, name), data, perm))
	}
}

// An encrypted key is decrypted only when its file's content is new: not
// on spurious events, not on a keep-key rotation, and a promoted next key
// was decrypted already.
func TestCertReloaderEncryptedKeyDecryptsOnlyOnChange(t *testing.T) {
	d := newCertDir(t, InitOptions{KeyPassphrase: []byte("correct horse")})
	var calls atomic.Int32
	pass := func() ([]byte, error) {
		calls.Add(1)
		return []byte("correct horse"), nil
	}
	e := startSource(t, d, true, func(o *CertReloaderOptions) { o.Key.Passphrase = pass })
	if got := calls.Load(); got != 2 {
		t.Fatalf("initial load: %d passphrase calls, want 2 (key and next key)", got)
	}
	settle := func(what string, action func()) {
		t.Helper()
		n := e.rec.eventCount()
		action()
		e.rec.waitFor(what, func() bool {
			return slices.ContainsFunc(e.rec.eventsSince(n), func(ev ReloadEvent) bool { return ev.Trigger == TriggerFileEvent })
		})
	}
	settle("a reload after an unrelated write", func() {
		mustNoErr(t, os.WriteFile(filepath.Join(d.l.Dir, "unrelated"), []byte("x"), 0o644))
	})
	settle("a reload after a touch of the key", func() {
		mustNoErr(t, os.Chtimes(d.l.ServerKey, time.Now(), time.Now()))
	})
	if got := calls.Load(); got != 2 {
		t.Errorf("after spurious events: %d passphrase calls, want 2", got)
	}
	res, err := Rotate(context.Background(), RotateOptions{CertPath: d.l.ServerCert, KeyPassphrase: passphrase("correct horse")})
	mustNoErr(t, err)
	e.waitServing(res.New)
	if got := calls.Load(); got != 2 {
		t.Errorf("after a keep-key rotation: %d passphrase calls, want 2", got)
	}
	res, err = Rotate(context.Background(), RotateOptions{CertPath: d.l.ServerCert, PromoteNext: true, KeyPassphrase: passphrase("correct horse")})
	mustNoErr(t, err)
	e.waitServing(res.New)
	e.rec.waitFor("the new next key", func() bool {
		nk := e.src.State().NextKey
		return nk != nil && samePublicKey(nk, res.NextKey)
	})
	if got := calls.Load(); got != 3 {
		t.Errorf("after promoting the next key: %d passphrase calls, want 3 (only the fresh next key)", got)
	}
}

// The next key is announced as it is on disk: replaced, removed, back; a
// bad file keeps the last good one and warns.
func TestCertReloaderNextKey(t *testing.T) {
	d := newCertDir(t, InitOptions{})
	e := startSource(t, d, true, nil)
	announces := func(pub crypto.PublicKey) func() bool {
		return func() bool {
			nk := e.src.State().NextKey
			if pub == nil {
				return nk == nil
			}
			return nk != nil && samePublicKey(nk, pub)
		}
	}
	if !announces(d.key(d.l.NextKey).Public())() {
		t.Fatal("the initial next key is not announced")
	}
	k1 := mustKey(t, KeyECDSAP256)
	mustNoErr(t, WriteKeyFile(d.l.NextKey, k1, WriteOptions{Overwrite: true}))
	e.rec.waitFor("the replaced next key", announces(k1.Public()))
	spki, err := x509.MarshalPKIXPublicKey(k1.Public())
	mustNoErr(t, err)
	if !bytes.Equal(e.src.State().NextSPKI, spki) {
		t.Error("NextSPKI is not the DER SubjectPublicKeyInfo of the next key")
	}

	mustNoErr(t, os.WriteFile(d.l.NextKey, []byte("-----BEGIN PRIVATE KEY-----\ngarbage\n"), 0o600))
	e.rec.waitFor("a warning about the next key", func() bool {
		w := e.rec.records(slog.LevelWarn)
		return len(w) > 0 && w[0].attrs["path"] == d.l.NextKey
	})
	if !announces(k1.Public())() {
		t.Error("a bad next key file replaced the announced next key")
	}

	mustNoErr(t, os.Remove(d.l.NextKey))
	e.rec.waitFor("no next key", announces(nil))

	k2 := mustKey(t, KeyEd25519)
	mustNoErr(t, WriteKeyFile(d.l.NextKey, k2, WriteOptions{}))
	e.rec.waitFor("the new next key", announces(k2.Public()))
}

// NewCertReloader refuses what it cannot serve, naming the file.
func TestNewCertReloaderErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, d *certDir) CertReloaderOptions
		wantErr string
	}{
		{"missing certificate", func(t *testing.T, d *certDir) CertReloaderOptions {
			mustNoErr(t, os.Remove(d.l.ServerCert))
			return CertReloaderOptions{CertPath: d.l.ServerCert}
		}, "server.crt"},
		{"mismatched key", func(t *testing.T, d *certDir) CertReloaderOptions {
			return CertReloaderOptions{CertPath: d.l.ServerCert, KeyPath: d.l.NextKey}
		}, "does not match"},
		{"expired certificate", func(t *testing.T, d *certDir) CertReloaderOptions {
			return CertReloaderOptions{CertPath: d.l.ServerCert, Now: func() time.Time { return time.Now().Add(100 * 24 * time.Hour) }}
		}, "expired"},
		{"bad next key", func(t *testing.T, d *certDir) CertReloaderOptions {
			mustNoErr(t, os.WriteFile(d.l.NextKey, []byte("nope"), 0o600))
			return CertReloaderOptions{CertPath: d.l.ServerCert, NextKeyPath: d.l.NextKey}
		}, "next key"},
		{"refused by the hook", func(t *testing.T, d *certDir) CertReloaderOptions {
			return CertReloaderOptions{CertPath: d.l.ServerCert, Accept: func(*x509.Certificate) error { return errRefused }}
		}, errRefused.Error()},
		{"negative debounce", func(t *testing.T, d *certDir) CertReloaderOptions {
			return CertReloaderOptions{CertPath: d.l.ServerCert, Debounce: -1}
		}, "debounce"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newCertDir(t, InitOptions{})
			opts := tc.setup(t, d)
			opts.Logger = newRecorder(t).logger()
			_, err := NewCertReloader(opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
	// A missing next key is fine: nothing to announce.
	d := newCertDir(t, InitOptions{})
	mustNoErr(t, os.Remove(d.l.NextKey))
	s, err := NewCertReloader(CertReloaderOptions{CertPath: d.l.ServerCert, NextKeyPath: d.l.NextKey, Logger: newRecorder(t).logger()})
	mustNoErr(t, err)
	if st := s.State(); st.NextKey != nil || st.NextSPKI != nil || st.Generation != 1 {
		t.Errorf("without a next key file: got %+v, want no next key at generation 1", st)
	}
}

// loadgen drives continuous handshakes and records when each serial was
// first served.
type loadgen struct {
	mu        sync.Mutex
	firstSeen map[string]time.Time
	ok        int
	errs      []error
	wake      chan struct{}
	stop      atomic.Bool
	wg        sync.WaitGroup
}

func startLoad(t *testing.T, addr string, roots *x509.CertPool, workers int) *loadgen {
	g := &loadgen{firstSeen: map[string]time.Time{}, wake: make(chan struct{}, 1)}
	for i := range workers {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			v := uint16(tls.VersionTLS12)
			if i%2 == 1 {
				v = tls.VersionTLS13
			}
			for !g.stop.Load() {
				leaf, err := handshake(addr, roots, v)
				now := time.Now()
				g.mu.Lock()
				if err != nil {
					g.errs = append(g.errs, err)
				} else {
					g.ok++
					s := SerialHex(leaf.SerialNumber)
					if _, ok := g.firstSeen[s]; !ok {
						g.firstSeen[s] = now
					}
				}
				g.mu.Unlock()
				select {
				case g.wake <- struct{}{}:
				default:
				}
			}
		}()
	}
	t.Cleanup(g.halt)
	return g
}

func (g *loadgen) halt() { g.stop.Store(true); g.wg.Wait() }

// waitSeen waits until a handshake was served serial and returns when.
func (g *loadgen) waitSeen(t *testing.T, serial string) time.Time {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		g.mu.Lock()
		at, ok := g.firstSeen[serial]
		g.mu.Unlock()
		if ok {
			return at
		}
		select {
		case <-g.wake:
		case <-deadline:
			t.Fatalf("no handshake was served serial %s within %v", serial, waitTimeout)
		}
	}
}

// The production promise at the library level: handshakes from several
// goroutines during a series of rotations through every path see zero
// failures and each new certificate within a second; long-lived
// connections are untouched.
func TestCertReloaderContinuousHandshakesDuringRotations(t *testing.T) {
	d := newCertDir(t, InitOptions{})
	var srcPtr atomic.Pointer[CertReloader]
	e := startSource(t, d, true, func(o *CertReloaderOptions) {
		// What sc-server passes: a pinning client must never be locked out.
		o.Accept = func(leaf *x509.Certificate) error {
			s := srcPtr.Load()
			if s == nil {
				return nil
			}
			st := s.State()
			if bytes.Equal(leaf.RawSubjectPublicKeyInfo, st.Certificate.RawSubjectPublicKeyInfo) || bytes.Equal(leaf.RawSubjectPublicKeyInfo, st.NextSPKI) {
				return nil
			}
			return errRefused
		}
	})
	srcPtr.Store(e.src)

	// Long-lived connections, one per version.
	var long []*tls.Conn
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c, err := tls.Dial("tcp", e.srv.addr, &tls.Config{RootCAs: d.roots, ServerName: "localhost", MinVersion: v, MaxVersion: v})
		mustNoErr(t, err)
		t.Cleanup(func() { c.Close() })
		long = append(long, c)
	}
	first := long[0].ConnectionState().PeerCertificates[0]
	ping := func(i int) {
		t.Helper()
		for _, c := range long {
			msg := fmt.Sprintf("ping %d\n", i)
			c.SetDeadline(time.Now().Add(waitTimeout))
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatalf("long-lived connection dropped: %v", err)
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
				t.Fatalf("long-lived connection: got %q, %v; want %q", buf, err, msg)
			}
		}
	}

	g := startLoad(t, e.srv.addr, d.roots, 3)
	paths := []rotationPath{}
	for _, r := range rotationPaths() {
		if r.name != "new key and certificate moved in" { // refused by the pin hook, by design
			paths = append(paths, r)
		}
	}
	paths = append(paths, rotationPath{"SIGHUP", func(t *testing.T, e *srcEnv) *x509.Certificate {
		c, _ := e.d.newCertOnKey(nil)
		mustNoErr(t, WriteCertificatesFile(e.d.l.ServerCert, []*x509.Certificate{c}, WriteOptions{Overwrite: true}))
		mustNoErr(t, e.src.Reload())
		return c
	}})
	rotations := 5 * len(paths)
	if testing.Short() {
		rotations = len(paths)
	}
	var lat []time.Duration
	for i := range rotations {
		r := paths[i%len(paths)]
		want := r.do(t, e)
		changed := time.Now()
		seen := g.waitSeen(t, SerialHex(want.SerialNumber))
		l := max(seen.Sub(changed), 0)
		if l > time.Second {
			t.Errorf("rotation %d (%s): the new certificate was first served after %v, want within 1s", i, r.name, l)
		}
		lat = append(lat, l)
		ping(i)
	}
	g.halt()
	if len(g.errs) > 0 {
		t.Errorf("%d of %d handshakes failed; first: %v", len(g.errs), g.ok+len(g.errs), g.errs[0])
	}
	for _, c := range long {
		if !c.ConnectionState().PeerCertificates[0].Equal(first) {
			t.Error("a long-lived connection's certificate changed")
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(int(p*float64(len(lat))), len(lat)-1)] }
	t.Logf("%d rotations, %d handshakes, %d failed; change to first new handshake: p50 %v, p99 %v, max %v",
		rotations, g.ok+len(g.errs), len(g.errs), pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
}

// A reader recovers an interrupted rotation only through Recover and the
// directory's lock, as a writer would (issue 13): while another process
// holds the lock the reloader renames nothing and keeps serving, its wait
// ends with Run's context rather than 30 s later, and once the lock is
// free the next reload completes the change.
func TestCertReloaderRecoversOnlyUnderTheLock(t *testing.T) {
	d := newCertDir(t, InitOptions{})
	e := startSource(t, d, false, nil)
	old := e.src.State().Certificate
	res, err := Rotate(context.Background(), RotateOptions{CertPath: d.l.ServerCert, hook: func(step string) bool { return step == "journal commit" }})
	if !errors.Is(err, errSimulatedCrash) || res != nil {
		t.Fatalf("interrupted rotation: got %v", err)
	}
	committed := journaledSet(t, d.l.Dir)
	before := snapshot(t, d.l)
	unlock, err := lockDir(context.Background(), d.l.Dir) // another process's change
	if err != nil {
		t.Fatal(err)
	}

	// Run looks at the files as it starts; the look waits for the lock
	// until the context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := e.src.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Run returned %v after its context ended: the recovery's wait ignored it", took)
	}
	if got := snapshot(t, d.l); !got.equal(before) {
		t.Errorf("the reader changed %v without the lock", got.diff(before))
	}
	if pending, _ := Pending(d.l.Dir); !pending {
		t.Error("the journal is gone: the reader recovered without the lock")
	}
	if !serving(e.src, old) {
		t.Error("the reader stopped serving the old pair while the change was pending")
	}
	evs := e.rec.eventsSince(0)
	if last := evs[len(evs)-1]; last.Result != ReloadFailed || !errors.Is(last.Err, context.DeadlineExceeded) {
		t.Errorf("the look under a held lock: got %v %v, want a failure ending with the context", last.Result, last.Err)
	}

	unlock()
	if err := e.src.Reload(); err != nil {
		t.Fatal(err)
	}
	if pending, _ := Pending(d.l.Dir); pending {
		t.Error("the journal is still there after a reload with the lock free")
	}
	got := snapshot(t, d.l)
	for path, sum := range committed {
		if got[path] != sum {
			t.Errorf("%s is not the committed new file", path)
		}
	}
	if serving(e.src, old) {
		t.Error("still serving the old certificate after the change completed")
	}
}
