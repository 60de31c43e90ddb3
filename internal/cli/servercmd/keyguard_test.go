package servercmd

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// secretMount is a directory laid out as Kubernetes mounts a Secret:
// tls.crt and tls.key are symlinks through "..data" to a generation
// directory, and an update swaps "..data" (no event names the files).
type secretMount struct {
	dir  string
	gens int
}

func newSecretMount(t *testing.T) *secretMount {
	t.Helper()
	return &secretMount{dir: filepath.Join(t.TempDir(), "tls")}
}

func (m *secretMount) cert() string { return filepath.Join(m.dir, "tls.crt") }
func (m *secretMount) key() string  { return filepath.Join(m.dir, "tls.key") }

// publish writes a new generation holding certFile and keyFile and swaps
// "..data" to it by an atomic rename, as the kubelet does.
func (m *secretMount) publish(t *testing.T, certFile, keyFile string) {
	t.Helper()
	m.gens++
	gen := filepath.Join(m.dir, "..gen"+string(rune('0'+m.gens)))
	if err := os.MkdirAll(gen, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, certFile, filepath.Join(gen, "tls.crt"))
	copyFile(t, keyFile, filepath.Join(gen, "tls.key"))
	if err := os.Chmod(filepath.Join(gen, "tls.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(m.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(gen), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(m.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if m.gens == 1 {
		for _, name := range []string{"tls.crt", "tls.key"} {
			if err := os.Symlink(filepath.Join("..data", name), filepath.Join(m.dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// servedPin connects with the layout's CA and returns the KEYS current pin.
func servedPin(t *testing.T, addr string, l pki.Layout) string {
	t.Helper()
	c := mustDial(t, addr, caConfig(t, l, 0))
	defer c.Close()
	cur, _, err := c.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cur
}

// Issue 15: a Secret updated with a new key that was never announced (what
// cert-manager does by default on every renewal) is an unannounced key
// change: an ERROR that says what pinned clients will do, one count in
// the metrics, and with refuse the old key keeps serving; with warn the
// new one serves. The state file carries the guard across a restart, and
// --check reports the same.
func TestUnannouncedKeyChange(t *testing.T) {
	for _, engine := range server.Engines() {
		for _, mode := range []string{keyChangeWarn, keyChangeRefuse} {
			t.Run(engine+"/"+mode, func(t *testing.T) {
				l := mustInit(t)
				pinA := pinning.PinOf(mustReadCert(t, l.ServerCert)).String()
				oldCert, oldKey := filepath.Join(t.TempDir(), "a.crt"), filepath.Join(t.TempDir(), "a.key")
				copyFile(t, l.ServerCert, oldCert)
				copyFile(t, l.ServerKey, oldKey)
				mount := newSecretMount(t)
				mount.publish(t, oldCert, oldKey)
				state := filepath.Join(t.TempDir(), "state", "key-state.json")
				if err := os.MkdirAll(filepath.Dir(state), 0o755); err != nil {
					t.Fatal(err)
				}
				args := []string{"--engine", engine, "--cert", mount.cert(), "--key", mount.key(), "--next-key", filepath.Join(mount.dir, "none.key"),
					"--key-state", state, "--key-change", mode, "--log-format", "json", "--metrics-listen", "127.0.0.1:0"}

				r := startServer(t, Env{}, args...)
				if got := servedPin(t, r.addr, l); got != pinA {
					t.Fatalf("served %s, want %s", got, pinA)
				}

				// The state is written once the server serves: after its
				// first reload at the latest.
				r.requestReload()
				if b, err := os.ReadFile(state); err != nil || !strings.Contains(string(b), pinA) {
					t.Fatalf("state file after start: %q, %v", b, err)
				}

				// A renewal on a new key nobody announced.
				if _, err := pki.Rotate(context.Background(), pki.RotateOptions{CertPath: l.ServerCert, PromoteNext: true}); err != nil {
					t.Fatal(err)
				}
				pinB := pinning.PinOf(mustReadCert(t, l.ServerCert)).String()
				mount.publish(t, l.ServerCert, l.ServerKey)
				r.requestReload()

				rec := logRecord(t, r.stderr.String(), "unannounced key change: clients pinned to "+pinA+" will refuse "+pinB+logTail(r.stderr.String(), pinA, pinB))
				if rec["level"] != "ERROR" || rec["old_pin"] != pinA || rec["new_pin"] != pinB {
					t.Errorf("log record: %v", rec)
				}
				m := scrapeMetrics(t, "http://"+metricsAddr(t, r))
				m.want(t, "spacecaptain_unannounced_key_changes_total", 1)
				want := pinB
				if mode == keyChangeRefuse {
					want = pinA
				}
				if got := servedPin(t, r.addr, l); got != want {
					t.Fatalf("after the swap: served %s, want %s", got, want)
				}
				// A second look at the same files logs and counts nothing more.
				r.requestReload()
				if n := strings.Count(r.stderr.String(), `"level":"ERROR","msg":"unannounced key change`); n != 1 {
					t.Errorf("the change was logged %d times, want once:\n%s", n, r.stderr)
				}
				if code := r.stop(); code != 0 {
					t.Fatalf("stop: exit %d", code)
				}

				// A restart with the new files.
				code, out, errOut := runCmd(t, Env{}, append(args, "--check")...)
				if mode == keyChangeRefuse {
					if code == 0 || !strings.Contains(errOut, "clients pinned to "+pinA+" will refuse "+pinB) {
						t.Fatalf("--check, refuse: exit %d\n%s%s", code, out, errOut)
					}
					code, _, errOut = runCmd(t, Env{}, append(args, "--listen", "127.0.0.1:0")...)
					if code == 0 || !strings.Contains(errOut, "unannounced key change") {
						t.Fatalf("start, refuse: exit %d\n%s", code, errOut)
					}
					return
				}
				// warn: the new key was served, so the state says so.
				if code != 0 || strings.Contains(out, "unannounced") {
					t.Fatalf("--check, warn, after the new key was served: exit %d\n%s%s", code, out, errOut)
				}
				// A state file that still names the old key (a pod restarted
				// on a Secret rotated while it was down).
				if err := os.WriteFile(state, []byte(`{"served":"`+pinA+`","announced":[]}`), 0o644); err != nil {
					t.Fatal(err)
				}
				code, out, errOut = runCmd(t, Env{}, append(args, "--check")...)
				if code != 0 || !strings.Contains(out, "unannounced key change") || !strings.Contains(out, "clients pinned to "+pinA+" will refuse it") {
					t.Fatalf("--check, warn, stale state: exit %d\n%s%s", code, out, errOut)
				}
			})
		}
	}
}

// A promotion of an announced next key passes the guard without a word.
func TestAnnouncedKeyChangePasses(t *testing.T) {
	l := mustInit(t)
	r := startServer(t, Env{}, append(layoutArgs(l), "--key-change", keyChangeRefuse, "--log-format", "json")...)
	if _, err := pki.Rotate(context.Background(), pki.RotateOptions{CertPath: l.ServerCert, PromoteNext: true}); err != nil {
		t.Fatal(err)
	}
	r.requestReload()
	want := pinning.PinOf(mustReadCert(t, l.ServerCert)).String()
	if got := servedPin(t, r.addr, l); got != want {
		t.Fatalf("after the promotion: served %s, want %s\n%s", got, want, r.stderr)
	}
	if strings.Contains(r.stderr.String(), "unannounced") {
		t.Errorf("a promotion was reported as unannounced:\n%s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(l.ServerCert), KeyStateFile)); err != nil {
		t.Errorf("no state file beside the certificate: %v", err)
	}
}

func mustReadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := pki.ReadCertificateFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// logTail returns the rest of the unannounced-change message after the
// two pins, read from the log itself, so that logRecord can find the
// record by its whole msg.
func logTail(log, oldPin, newPin string) string {
	head := "clients pinned to " + oldPin + " will refuse " + newPin
	i := strings.Index(log, head)
	if i < 0 {
		return ""
	}
	rest := log[i+len(head):]
	if j := strings.Index(rest, `"`); j >= 0 {
		return rest[:j]
	}
	return ""
}
