//go:build unix

package interop

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// Issue 5, "Done when": two real sc-server processes share one certs
// directory whose certificate reaches its renewal point (two thirds of its
// lifetime) a few seconds after they start. Without a restart, the
// certificate is renewed on the same key (same pin, new serial) exactly
// once between them — the lock file and the "still due?" check under it —
// and both serve the renewed certificate; the directory ends with one
// valid pair and no leftovers of the change.
func TestSelfRenewalSharedDirectory(t *testing.T) {
	dir := t.TempDir()
	l := pki.DefaultLayout(filepath.Join(dir, "certs"))
	run(t, dir, bin(t, "sc-cert"), "init", "--dir", l.Dir)
	is := mustIssuer(t, l.Dir)
	tmpl, err := pki.ReadCertificateFile(l.ServerCert)
	if err != nil {
		t.Fatal(err)
	}
	// A 15-minute lifetime whose renewal point is 4 s away. (Renewal
	// keeps the lifetime and backdates by pki.Backdate, 5 minutes: the
	// renewed certificate is due again 5 minutes later, long after the
	// test.)
	const life = 15 * time.Minute
	renewAt := time.Now().Add(4 * time.Second)
	notBefore := renewAt.Add(-life * 2 / 3)
	b, old := is.issueLike(t, tmpl, publicKeyOf(t, l.ServerKey), notBefore, notBefore.Add(life))
	if err := os.WriteFile(l.ServerCert, b, 0o644); err != nil {
		t.Fatal(err)
	}
	oldSerial, pin := pki.SerialHex(old.SerialNumber), pinning.PinOf(old).String()
	// X.509 keeps whole seconds: the renewal point is the certificate's.
	renewAt = old.NotBefore.Add(old.NotAfter.Sub(old.NotBefore) * 2 / 3)

	a := startSCServer(t, dir)
	c := startSCServer(t, dir)
	for _, s := range []*scServer{a, c} {
		if got := pki.SerialHex(servedCert(t, s, l.CACert).SerialNumber); got != oldSerial {
			t.Fatalf("at start: serving %s, want %s (renewed too early?)", got, oldSerial)
		}
	}
	// Renewal is due at renewAt; give it 20 s.
	for _, s := range []*scServer{a, c} {
		waitLog(t, s, 0, 20*time.Second, `"msg":"certificate reloaded"`)
	}
	disk, err := pki.LoadPair(l.ServerCert, l.ServerKey, pki.LoadOptions{Key: pki.KeyOptions{RequirePrivateFile: true}})
	if err != nil {
		t.Fatalf("the pair on disk after renewal: %v", err)
	}
	newLeaf := disk.Leaf()
	newSerial := pki.SerialHex(newLeaf.SerialNumber)
	if newSerial == oldSerial {
		t.Fatal("the certificate on disk was not renewed")
	}
	if got := pinning.PinOf(newLeaf).String(); got != pin {
		t.Errorf("renewed on another key: pin %s, want %s", got, pin)
	}
	if err := pki.CheckValidity(newLeaf, time.Now(), 5*time.Minute); err != nil {
		t.Errorf("the renewed certificate: %v", err)
	}
	for _, s := range []*scServer{a, c} {
		waitServed(t, s, l.CACert, newSerial, 10*time.Second)
	}

	renewals := countLog(a, `"msg":"certificate renewed"`) + countLog(c, `"msg":"certificate renewed"`)
	if renewals != 1 {
		t.Errorf("%d renewals logged by the two servers, want exactly 1:\n%s\n%s", renewals, a.Log(), c.Log())
	}
	for _, s := range []*scServer{a, c} {
		line := lastLine(s, `"msg":"certificate renewed"`)
		if line == "" {
			continue
		}
		var rec struct {
			Time      time.Time `json:"time"`
			Serial    string    `json:"serial"`
			OldSerial string    `json:"old_serial"`
			Pin       string    `json:"pin"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Serial != newSerial || rec.OldSerial != oldSerial || rec.Pin != pin {
			t.Errorf("renewal record %+v, want serial %s, old_serial %s, pin %s", rec, newSerial, oldSerial, pin)
		}
		if rec.Time.Before(renewAt) {
			t.Errorf("renewed at %v, before the renewal point %v", rec.Time, renewAt)
		}
	}
	// One valid pair and nothing else: no journal, no staged file.
	entries, err := os.ReadDir(l.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == ".sc-cert.journal" || strings.HasSuffix(e.Name(), ".sc-new") {
			t.Errorf("left over after the renewal: %s", e.Name())
		}
	}
}
