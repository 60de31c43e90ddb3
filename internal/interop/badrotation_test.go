//go:build unix

package interop

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/pki"
)

// Issue 5, "Done when": a bad rotation — a key that does not match, a
// truncated PEM, an expired or not yet valid certificate, a file that
// cannot be read, a key others may read, a key where the certificate
// should be — leaves the old certificate serving (the real sc-server logs
// a warning naming the file, counts a failed reload, and stays ready), and
// the next good rotation is served. Then the whole certs directory is
// removed and recreated, and replaced by a rename: each time the server
// keeps serving, then serves the new files.
func TestBadRotationKeepsServing(t *testing.T) {
	dir := t.TempDir()
	srv := startSCServer(t, dir, "--metrics-listen", "127.0.0.1:0")
	l := pki.DefaultLayout(filepath.Join(dir, "certs"))
	is := mustIssuer(t, l.Dir)
	tmpl, err := pki.ReadCertificateFile(l.ServerCert)
	if err != nil {
		t.Fatal(err)
	}
	serverKey := publicKeyOf(t, l.ServerKey)
	current := pki.SerialHex(tmpl.SerialNumber)
	stage := t.TempDir()
	// install writes data to path the way sc-cert does: a complete file
	// renamed into place, so the server never catches it half-written and
	// every failure below is the content's.
	install := func(path string, data []byte, mode os.FileMode) {
		t.Helper()
		tmp := filepath.Join(stage, filepath.Base(path))
		if err := os.WriteFile(tmp, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(tmp, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	goodCert := func() (string, []byte) {
		b, c := is.issueLike(t, tmpl, serverKey, time.Time{}, time.Time{})
		return pki.SerialHex(c.SerialNumber), b
	}
	keyPEM, err := os.ReadFile(l.ServerKey)
	if err != nil {
		t.Fatal(err)
	}

	type badCase struct {
		name  string
		blame string // the file the warning names
		apply func()
		fix   func() // undoes what the good rotation does not replace
	}
	cases := []badCase{
		{"mismatched key", l.ServerCert, func() {
			k, err := pki.GenerateKey(pki.KeyECDSAP256)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := is.issueLike(t, tmpl, k.Public(), time.Time{}, time.Time{})
			install(l.ServerCert, b, 0o644)
		}, nil},
		{"truncated PEM", l.ServerCert, func() {
			_, b := goodCert()
			install(l.ServerCert, b[:len(b)/2], 0o644)
		}, nil},
		{"expired certificate", l.ServerCert, func() {
			b, _ := is.issueLike(t, tmpl, serverKey, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
			install(l.ServerCert, b, 0o644)
		}, nil},
		{"not yet valid certificate", l.ServerCert, func() {
			b, _ := is.issueLike(t, tmpl, serverKey, time.Now().Add(24*time.Hour), time.Now().Add(48*time.Hour))
			install(l.ServerCert, b, 0o644)
		}, nil},
		{"key where the certificate should be", l.ServerCert, func() {
			install(l.ServerCert, keyPEM, 0o644)
		}, nil},
		// Unreadable: root reads a file of mode 000, so a directory
		// stands where the file should be (read(2) fails with EISDIR).
		{"directory where the certificate should be", l.ServerCert, func() {
			if err := os.Remove(l.ServerCert); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(l.ServerCert, 0o755); err != nil {
				t.Fatal(err)
			}
		}, func() {
			if err := os.Remove(l.ServerCert); err != nil {
				t.Fatal(err)
			}
		}},
		{"key readable by others", l.ServerKey, func() {
			if err := os.Chmod(l.ServerKey, 0o644); err != nil {
				t.Fatal(err)
			}
		}, func() {
			if err := os.Chmod(l.ServerKey, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	if os.Geteuid() != 0 {
		cases = append(cases, badCase{"unreadable certificate (mode 000)", l.ServerCert, func() {
			if err := os.Chmod(l.ServerCert, 0); err != nil {
				t.Fatal(err)
			}
		}, func() {
			if err := os.Chmod(l.ServerCert, 0o644); err != nil {
				t.Fatal(err)
			}
		}})
	} else {
		t.Log("running as root, which reads files of mode 000: the directory case stands for an unreadable file")
	}

	const refused = "certificate not reloaded, keeping the one being served"
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := countLog(srv, `"level":"WARN"`, refused)
			c.apply()
			waitLog(t, srv, n, 10*time.Second, `"level":"WARN"`, refused)
			if last := lastLine(srv, refused); !strings.Contains(last, filepath.Base(c.blame)) {
				t.Errorf("the warning does not name %s:\n%s", c.blame, last)
			}
			if got := pki.SerialHex(servedCert(t, srv, l.CACert).SerialNumber); got != current {
				t.Fatalf("after a bad rotation the server presents %s, want the old %s", got, current)
			}
			if status, body := httpGet(t, "http://"+srv.MetricsAddr+"/readyz"); status != http.StatusOK {
				t.Errorf("/readyz after a bad rotation: %d %q, want 200", status, body)
			}
			if c.fix != nil {
				c.fix()
			}
			serial, b := goodCert()
			install(l.ServerCert, b, 0o644)
			waitServed(t, srv, l.CACert, serial, 10*time.Second)
			current = serial
		})
	}
	ms := scrapeMetrics(t, srv.MetricsAddr)
	if v := ms.sum("spacecaptain_cert_reloads_total", "result=failed"); v < float64(len(cases)) {
		t.Errorf("failed reloads: got %v, want at least %d:\n%s", v, len(cases), ms.series("spacecaptain_cert_reloads_total"))
	}
	if v := ms.sum("spacecaptain_cert_info", "serial="+current); v != 1 {
		t.Errorf("cert_info does not name %s:\n%s", current, ms.series("spacecaptain_cert_info"))
	}

	// The whole directory removed, then made again file by file (a
	// restore from backup); then replaced by a rename (a new directory
	// moved into place, the old one moved aside).
	saved := map[string][]byte{}
	for _, f := range []string{l.CACert, l.CAKey, l.ServerKey, l.NextKey} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		saved[filepath.Base(f)] = b
	}
	caCopy := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caCopy, saved[pki.CACertFile], 0o644); err != nil {
		t.Fatal(err)
	}
	// fill writes the saved files and a new certificate into d and
	// returns its serial.
	fill := func(d string) string {
		for name, b := range saved {
			mode := os.FileMode(0o600)
			if name == pki.CACertFile {
				mode = 0o644
			}
			if err := os.WriteFile(filepath.Join(d, name), b, mode); err != nil {
				t.Fatal(err)
			}
		}
		serial, b := goodCert()
		if err := os.WriteFile(filepath.Join(d, pki.ServerCertFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return serial
	}
	t.Run("certs directory removed and recreated", func(t *testing.T) {
		n := countLog(srv, `"level":"WARN"`, refused)
		if err := os.RemoveAll(l.Dir); err != nil {
			t.Fatal(err)
		}
		waitLog(t, srv, n, 10*time.Second, `"level":"WARN"`, refused)
		if got := pki.SerialHex(servedCert(t, srv, caCopy).SerialNumber); got != current {
			t.Fatalf("with no directory the server presents %s, want %s", got, current)
		}
		if err := os.Mkdir(l.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		current = fill(l.Dir)
		waitServed(t, srv, caCopy, current, 10*time.Second)
	})
	t.Run("certs directory replaced by a rename", func(t *testing.T) {
		staged := filepath.Join(dir, "certs.new")
		if err := os.Mkdir(staged, 0o755); err != nil {
			t.Fatal(err)
		}
		serial := fill(staged)
		if err := os.Rename(l.Dir, filepath.Join(dir, "certs.old")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(staged, l.Dir); err != nil {
			t.Fatal(err)
		}
		waitServed(t, srv, caCopy, serial, 10*time.Second)
		current = serial
		// And the watch on the new directory works: one more rotation.
		serial, b := goodCert()
		install(l.ServerCert, b, 0o644)
		waitServed(t, srv, caCopy, serial, 10*time.Second)
	})
	if n := countLog(srv, `"level":"ERROR"`); n > 0 {
		t.Errorf("the server logged %d errors:\n%s", n, srv.Log())
	}
}

// lastLine returns the last line of srv's log that contains s.
func lastLine(srv *scServer, s string) string {
	lines := strings.Split(srv.Log(), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}
