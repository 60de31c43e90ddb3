package pki

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseTicketKeys(t *testing.T) {
	k1 := strings.Repeat("ab", 32)
	k2 := strings.Repeat("0f", 32)
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string
	}{
		{"one key", k1 + "\n", []string{k1}, ""},
		{"comments, blanks, spaces, CRLF, no final newline", "# header\n\n  " + k1 + " \r\n# old:\n" + k2, []string{k1, k2}, ""},
		{"uppercase hex", strings.ToUpper(k1), []string{k1}, ""},
		{"empty", "", nil, "no key"},
		{"only comments", "# nothing\n", nil, "no key"},
		{"short key", k1[:62], nil, "line 1: got 62 characters"},
		{"long key", k1 + "00", nil, "want 64 hex digits"},
		{"not hex", strings.Repeat("zz", 32), nil, "hex"},
		{"all zeros", strings.Repeat("00", 32), nil, "all zeros"},
		{"duplicate", k1 + "\n" + k2 + "\n" + k1, nil, "line 3: the key appears twice"},
		{"text after the key", k1 + " # current", nil, "characters"},
		{"PEM", "-----BEGIN PRIVATE KEY-----\n", nil, "line 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := ParseTicketKeys([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error mentioning %q", err, tc.wantErr)
				}
				return
			}
			mustNoErr(t, err)
			var got []string
			for _, k := range keys {
				got = append(got, hex.EncodeToString(k[:]))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("too many", func(t *testing.T) {
		var b []byte
		for i := range MaxTicketKeys + 1 {
			var k [32]byte
			k[0] = byte(i + 1)
			b = hex.AppendEncode(b, k[:])
			b = append(b, '\n')
		}
		if _, err := ParseTicketKeys(b); err == nil || !strings.Contains(err.Error(), "more than") {
			t.Errorf("got %v, want an error about too many keys", err)
		}
	})
}

// Whatever parses formats to a file that parses to the same keys.
func FuzzParseTicketKeys(f *testing.F) {
	f.Add([]byte(strings.Repeat("ab", 32) + "\n"))
	f.Add(formatTicketKeys([][32]byte{{1}, {2}, {3}}))
	f.Add([]byte("# c\n\n" + strings.Repeat("0F", 32) + "\r\n"))
	f.Add([]byte(strings.Repeat("00", 32)))
	f.Add([]byte("zz"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseTicketKeys(data)
		if err != nil {
			return
		}
		again, err := ParseTicketKeys(formatTicketKeys(keys))
		if err != nil {
			t.Fatalf("formatted keys do not parse: %v", err)
		}
		if !slices.Equal(keys, again) {
			t.Fatalf("round trip: got %x, want %x", again, keys)
		}
	})
}

func TestRotateTicketKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ticket.keys")
	var history [][32]byte
	for i := range 4 {
		mustNoErr(t, RotateTicketKeyFile(path, TicketKeyFileOptions{}))
		keys, err := ParseTicketKeys(mustRead(t, path))
		mustNoErr(t, err)
		history = append([][32]byte{keys[0]}, history...)
		want := history[:min(len(history), DefaultTicketKeysKeep)]
		if !slices.Equal(keys, want) {
			t.Fatalf("rotation %d: got %d keys %x, want the new one then the previous: %x", i, len(keys), keys, want)
		}
	}
	if fi, err := os.Stat(path); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600) {
		t.Errorf("ticket key file: got %v %v, want mode 0600", fi.Mode(), err)
	}
	mustNoErr(t, RotateTicketKeyFile(path, TicketKeyFileOptions{Keep: 5}))
	if keys, _ := ParseTicketKeys(mustRead(t, path)); len(keys) != 3 {
		t.Errorf("keep 5 with 2 in the file: got %d keys, want 3", len(keys))
	}

	// A damaged file is left alone.
	mustNoErr(t, os.WriteFile(path, []byte("damaged"), 0o600))
	if err := RotateTicketKeyFile(path, TicketKeyFileOptions{}); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("damaged file: got %v, want an error naming it", err)
	}
	if got := string(mustRead(t, path)); got != "damaged" {
		t.Errorf("damaged file was replaced: %q", got)
	}
	for _, keep := range []int{-1, MaxTicketKeys + 1} {
		if err := RotateTicketKeyFile(path, TicketKeyFileOptions{Keep: keep}); err == nil {
			t.Errorf("keep %d: got no error", keep)
		}
	}
}

// ticketJar is a client session cache that keeps the first ticket it is
// given, so a test can present one ticket again and again.
type ticketJar struct {
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (j *ticketJar) Get(string) (*tls.ClientSessionState, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.cs, j.cs != nil
}

func (j *ticketJar) Put(_ string, cs *tls.ClientSessionState) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cs == nil && cs != nil {
		j.cs = cs
	}
}

// ticketServer serves a fixed certificate with tk's session tickets.
func ticketServer(t *testing.T, d *certDir, tk *TicketKeys) string {
	t.Helper()
	p, err := LoadPair(d.l.ServerCert, d.l.ServerKey, LoadOptions{})
	mustNoErr(t, err)
	cert := p.TLSCertificate()
	cfg := serverConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil })
	cfg.WrapSession, cfg.UnwrapSession = tk.WrapSession, tk.UnwrapSession
	return startTLSServer(t, cfg).addr
}

// session connects with jar's ticket, if any, exchanges a byte (a TLS 1.3
// ticket arrives after the handshake) and reports whether it resumed.
func session(t *testing.T, addr string, d *certDir, v uint16, jar *ticketJar) bool {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: d.roots, ServerName: "localhost", MinVersion: v, MaxVersion: v, ClientSessionCache: jar})
	mustNoErr(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	_, err = c.Write([]byte{1})
	mustNoErr(t, err)
	_, err = io.ReadFull(c, make([]byte, 1))
	mustNoErr(t, err)
	return c.ConnectionState().DidResume
}

// newTicket gets a fresh ticket from addr.
func newTicket(t *testing.T, addr string, d *certDir, v uint16) *ticketJar {
	t.Helper()
	jar := &ticketJar{}
	if session(t, addr, d, v, jar) {
		t.Fatal("a connection without a ticket resumed")
	}
	if jar.cs == nil {
		t.Fatal("the server sent no session ticket")
	}
	return jar
}

func mustResume(t *testing.T, what, addr string, d *certDir, v uint16, jar *ticketJar, want bool) {
	t.Helper()
	if got := session(t, addr, d, v, jar); got != want {
		t.Errorf("%s: resumed %v, want %v", what, got, want)
	}
}

// Two servers sharing one ticket-key file resume each other's sessions,
// through two rotations of the file, until the retention window of the
// key that was dropped from the file has passed.
func TestTicketKeysSharedFile(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			d := newCertDir(t, InitOptions{})
			path := filepath.Join(t.TempDir(), "ticket.keys")
			mustNoErr(t, RotateTicketKeyFile(path, TicketKeyFileOptions{}))
			clock := newFakeClock(time.Now())
			rec := newRecorder(t)
			newTK := func() *TicketKeys {
				tk, err := NewTicketKeys(TicketKeysOptions{File: path, Rotation: time.Hour, Now: clock.Now, Logger: rec.logger(), RequirePrivateFile: true})
				mustNoErr(t, err)
				return tk
			}
			tkA, tkB := newTK(), newTK()
			a, b := ticketServer(t, d, tkA), ticketServer(t, d, tkB)
			reload := func() {
				t.Helper()
				mustNoErr(t, tkA.Reload())
				mustNoErr(t, tkB.Reload())
			}

			fromA := newTicket(t, a, d, v)
			mustResume(t, "A's session on B", b, d, v, fromA, true)

			// The file gets a new key; the old one stays in it.
			mustNoErr(t, RotateTicketKeyFile(path, TicketKeyFileOptions{}))
			reload()
			mustResume(t, "A's old session on B after one rotation", b, d, v, fromA, true)
			fromB := newTicket(t, b, d, v)
			mustResume(t, "B's new session on A", a, d, v, fromB, true)

			// The oldest key leaves the file: kept for one rotation period.
			mustNoErr(t, RotateTicketKeyFile(path, TicketKeyFileOptions{}))
			reload()
			mustResume(t, "A's old session on B, key retained", b, d, v, fromA, true)

			clock.Add(time.Hour - time.Second)
			reload()
			mustResume(t, "A's old session just before the window ends", b, d, v, fromA, true)
			clock.Add(time.Second)
			reload()
			mustResume(t, "A's old session after the window", b, d, v, fromA, false)
			mustResume(t, "A's old session on A after the window", a, d, v, fromA, false)
			mustResume(t, "B's session, its key still in the file", a, d, v, fromB, true)
		})
	}
}

// Without a file, keys live in memory and rotate on schedule; a ticket
// resumes for one more period after its key stopped encrypting.
func TestTicketKeysInMemory(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			d := newCertDir(t, InitOptions{})
			clock := newFakeClock(time.Now())
			var events []TicketKeysEvent
			tk, err := NewTicketKeys(TicketKeysOptions{Rotation: time.Hour, Now: clock.Now, Logger: newRecorder(t).logger(),
				OnReload: func(ev TicketKeysEvent) { events = append(events, ev) }})
			mustNoErr(t, err)
			addr := ticketServer(t, d, tk)
			other, err := NewTicketKeys(TicketKeysOptions{Logger: newRecorder(t).logger()})
			mustNoErr(t, err)
			otherAddr := ticketServer(t, d, other)

			t1 := newTicket(t, addr, d, v)
			mustResume(t, "a fresh ticket", addr, d, v, t1, true)
			mustResume(t, "a ticket on a server with its own keys", otherAddr, d, v, t1, false)

			clock.Add(time.Hour - time.Second)
			mustNoErr(t, tk.Reload())
			if last := events[len(events)-1]; last.Result != ReloadUnchanged {
				t.Errorf("before the rotation time: got %s, want unchanged", last.Result)
			}
			clock.Add(time.Second)
			mustNoErr(t, tk.Reload())
			if last := events[len(events)-1]; last.Result != ReloadChanged || last.Keys != 2 {
				t.Errorf("at the rotation time: got %+v, want changed with 2 keys", last)
			}
			mustResume(t, "a ticket one rotation old", addr, d, v, t1, true)
			t2 := newTicket(t, addr, d, v)

			clock.Add(time.Hour)
			mustNoErr(t, tk.Reload())
			mustResume(t, "a ticket two rotations old", addr, d, v, t1, false)
			mustResume(t, "a ticket one rotation old", addr, d, v, t2, true)
		})
	}
}

// The file is watched like certificates: a rotation is picked up, a
// damaged file keeps the keys in use and warns once.
func TestTicketKeysWatchedFile(t *testing.T) {
	d := newCertDir(t, InitOptions{})
	path := filepath.Join(t.TempDir(), "ticket.keys")
	mustNoErr(t, RotateTicketKeyFile(path, TicketKeyFileOptions{}))
	rec := newRecorder(t)
	var mu sync.Mutex
	var events []TicketKeysEvent
	tk, err := NewTicketKeys(TicketKeysOptions{File: path, Logger: rec.logger(), OnReload: func(ev TicketKeysEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
		rec.poke()
	}})
	mustNoErr(t, err)
	runInBackground(t, tk.Run)
	rec.waitFor("the watches", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(events, func(ev TicketKeysEvent) bool { return ev.Trigger == TriggerRewatch })
	})
	addr := ticketServer(t, d, tk)
	jar := newTicket(t, addr, d, tls.VersionTLS13)
	changedSince := func(n int) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return slices.ContainsFunc(events[n:], func(ev TicketKeysEvent) bool { return ev.Result == ReloadChanged })
		}
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(events) }

	n := count()
	mustNoErr(t, RotateTicketKeyFile(path, TicketKeyFileOptions{}))
	rec.waitFor("the rotated file", changedSince(n))
	mustResume(t, "a ticket after the file rotated", addr, d, tls.VersionTLS13, jar, true)

	mustNoErr(t, os.WriteFile(path, []byte("damaged\n"), 0o600))
	rec.waitFor("a warning", func() bool { return len(rec.records(slog.LevelWarn)) > 0 })
	if w := rec.records(slog.LevelWarn)[0]; w.attrs["path"] != path || !strings.Contains(w.attrs["err"], "line 1") {
		t.Errorf("warning: got %v, want the path and the reason", w)
	}
	mustResume(t, "a ticket after a damaged file", addr, d, tls.VersionTLS13, jar, true)
	if bytes.Contains([]byte(rec.allLogText()), mustRead(t, path)[:4]) {
		t.Error("the logs quote the file")
	}

	n = count()
	mustNoErr(t, os.Remove(path))
	mustNoErr(t, RotateTicketKeyFile(path, TicketKeyFileOptions{}))
	rec.waitFor("the repaired file", changedSince(n))
}

func TestNewTicketKeysErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	mustNoErr(t, os.WriteFile(bad, []byte("nope"), 0o600))
	open := filepath.Join(dir, "open")
	mustNoErr(t, RotateTicketKeyFile(open, TicketKeyFileOptions{}))
	mustNoErr(t, os.Chmod(open, 0o644))
	tests := []struct {
		name    string
		opts    TicketKeysOptions
		wantErr string
	}{
		{"missing file", TicketKeysOptions{File: filepath.Join(dir, "missing")}, "missing"},
		{"bad file", TicketKeysOptions{File: bad}, "line 1"},
		{"negative rotation", TicketKeysOptions{Rotation: -time.Second}, "negative"},
	}
	if runtime.GOOS != "windows" {
		tests = append(tests, struct {
			name    string
			opts    TicketKeysOptions
			wantErr string
		}{"file readable by others", TicketKeysOptions{File: open, RequirePrivateFile: true}, "others may read it; fix: chmod 600"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Logger = newRecorder(t).logger()
			if _, err := NewTicketKeys(tc.opts); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// Run rotates in-memory keys on schedule, by the real clock.
func TestTicketKeysRunRotatesInMemory(t *testing.T) {
	rec := newRecorder(t)
	rotated := make(chan TicketKeysEvent, 10)
	tk, err := NewTicketKeys(TicketKeysOptions{Rotation: time.Second, Logger: rec.logger(), OnReload: func(ev TicketKeysEvent) {
		if ev.Trigger == TriggerPeriodic && ev.Result == ReloadChanged {
			rotated <- ev
		}
	}})
	mustNoErr(t, err)
	runInBackground(t, tk.Run)
	select {
	case ev := <-rotated:
		if ev.Keys != 2 {
			t.Errorf("after the first rotation: got %d keys, want the new one and the previous", ev.Keys)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no rotation")
	}
}

// A key that left the file stops decrypting when its retention period
// ends, by the real clock, with no file event to prompt it.
func TestTicketKeysRetentionEndsOnTime(t *testing.T) {
	d := newCertDir(t, InitOptions{})
	path := filepath.Join(t.TempDir(), "ticket.keys")
	mustNoErr(t, RotateTicketKeyFile(path, TicketKeyFileOptions{Keep: 1}))
	rec := newRecorder(t)
	var mu sync.Mutex
	var events []TicketKeysEvent
	tk, err := NewTicketKeys(TicketKeysOptions{File: path, Rotation: 1500 * time.Millisecond, Logger: rec.logger(), OnReload: func(ev TicketKeysEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
		rec.poke()
	}})
	mustNoErr(t, err)
	runInBackground(t, tk.Run)
	addr := ticketServer(t, d, tk)
	old := newTicket(t, addr, d, tls.VersionTLS13)

	left := time.Now() // the key cannot leave before the file changes
	mustNoErr(t, RotateTicketKeyFile(path, TicketKeyFileOptions{Keep: 1}))
	mustNoErr(t, tk.Reload())
	mustResume(t, "a ticket whose key just left the file", addr, d, tls.VersionTLS13, old, true)
	rec.waitFor("the retained key to be dropped", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(events, func(ev TicketKeysEvent) bool {
			return ev.Trigger == TriggerPeriodic && ev.Result == ReloadChanged && ev.Keys == 1
		})
	})
	if held := time.Since(left); held < 1500*time.Millisecond {
		t.Errorf("the retained key was dropped after %v, want at least the 1.5s rotation period", held)
	}
	mustResume(t, "a ticket after its key's retention ended", addr, d, tls.VersionTLS13, old, false)
}
