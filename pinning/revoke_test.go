package pinning

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tofuClient is a trust-on-first-use client of srv with a store of its own.
func tofuClient(t *testing.T, addr string, clock *fixedClock) (*Trust, *Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	store := mustStore(t, path, clock.Now)
	return mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: store, Host: addr, Now: clock.Now}), store, path
}

// announce connects, then records what the server announces.
func announce(t *testing.T, tr *Trust, addr string, a Announcement) Recorded {
	t.Helper()
	state, err := connect(t, tr, addr)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	rec, err := tr.RecordAnnouncement(state, a)
	if err != nil {
		t.Fatalf("recording %+v: %v", a, err)
	}
	return rec
}

// The emergency rollover: the server moves to its announced next key and
// revokes the old one. A client that saw the revocation refuses a
// machine-in-the-middle holding the old key; a client that never connected
// after it still accepts it (the limit of any announcement).
func TestEmergencyRolloverRevokesOldKey(t *testing.T) {
	keyA, keyB := mustKey(t), mustKey(t)
	certA, certB := mustLeaf(t, keyA), mustLeaf(t, keyB)
	pinA, pinB, pinC := PinOf(certA), PinOf(certB), PinOfSPKI([]byte("C"))
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			srv := startServer(t, serverSpec{cert: tlsCert(keyA, certA), version: v.v})
			clock := newClock()
			told, toldStore, toldPath := tofuClient(t, srv.addr, clock)
			untold, _, _ := tofuClient(t, srv.addr, clock)
			for _, tr := range []*Trust{told, untold} {
				announce(t, tr, srv.addr, Announcement{Current: pinA, Next: []Pin{pinB}})
			}

			// The key A leaked: the operator promotes B and revokes A.
			clock.Advance(time.Hour)
			srv.setCert(tlsCert(keyB, certB))
			rec := announce(t, told, srv.addr, Announcement{Current: pinB, Next: []Pin{pinC}, Revoked: []Pin{pinA}})
			checkRecorded(t, rec, Recorded{Promoted: true, Added: []Pin{pinC}})
			if !samePins(rec.Revoked, []Pin{pinA}) || len(rec.Ignored) != 0 {
				t.Fatalf("got revoked %v, ignored %v; want A revoked, nothing ignored", rec.Revoked, rec.Ignored)
			}
			e := mustLookup(t, toldStore, srv.addr)
			r, revoked := e.RevokedPin(pinA)
			if !revoked || r.Origin != OriginAnnounced || !r.FirstSeen.Equal(clock.Now()) || e.index(pinA) >= 0 {
				t.Fatalf("got %v, want A revoked (via=announced, first=now) and no longer trusted", e)
			}
			if !strings.Contains(mustRead(t, toldPath), " revoked="+pinA.String()+";first=") {
				t.Fatalf("the store has no revoked= field:\n%s", mustRead(t, toldPath))
			}

			// A machine in the middle with the stolen key A.
			srv.setCert(tlsCert(keyA, certA))
			before := mustRead(t, toldPath)
			var re *RevokedKeyError
			if _, err := connect(t, told, srv.addr); !errors.As(err, &re) || !re.Pin.Equal(pinA) || re.Origin != OriginAnnounced {
				t.Fatalf("told client, old key: got %v, want a *RevokedKeyError for A", err)
			}
			if w := re.Error(); !strings.Contains(w, "revoked by the server's operator") || !strings.Contains(w, clock.Now().Format(time.RFC3339)) {
				t.Errorf("the error does not say who revoked the key and when: %s", w)
			}
			if mustRead(t, toldPath) != before {
				t.Error("a refused handshake changed the store")
			}
			// The limit: a client that never connected after the
			// revocation still trusts A.
			if _, err := connect(t, untold, srv.addr); err != nil {
				t.Errorf("untold client, old key: got %v, want accepted (it never saw the revocation)", err)
			}
			// The real server still works for the told client.
			srv.setCert(tlsCert(keyB, certB))
			announce(t, told, srv.addr, Announcement{Current: pinB, Next: []Pin{pinC}, Revoked: []Pin{pinA}})
			if got := mustLookup(t, toldStore, srv.addr); len(got.Revoked) != 1 {
				t.Errorf("a repeated revocation: got %v, want one revoked mark", got)
			}
		})
	}
}

// The attack the successor rule stops: a machine in the middle holding the
// stolen old key A announces "revoked B" to lock clients out of the real
// server, which moved to B. It is ignored, whether the client has moved to
// B already or not.
func TestStolenOldKeyCannotRevokeItsSuccessor(t *testing.T) {
	keyA, keyB := mustKey(t), mustKey(t)
	certA, certB := mustLeaf(t, keyA), mustLeaf(t, keyB)
	pinA, pinB := PinOf(certA), PinOf(certB)
	srv := startServer(t, serverSpec{cert: tlsCert(keyA, certA), version: tls.VersionTLS13})
	clock := newClock()

	for _, addedByPerson := range []bool{false, true} {
		name := "tofu"
		if addedByPerson {
			name = "added"
		}
		t.Run(name, func(t *testing.T) {
			srv.setCert(tlsCert(keyA, certA))
			tr, store, path := tofuClient(t, srv.addr, clock)
			if addedByPerson {
				if err := store.Add(srv.addr, pinA, pinB); err != nil {
					t.Fatal(err)
				}
			}
			announce(t, tr, srv.addr, Announcement{Current: pinA, Next: []Pin{pinB}})

			// The attacker, with A: "revoked B" is ignored.
			rec := announce(t, tr, srv.addr, Announcement{Current: pinA, Next: []Pin{pinB}, Revoked: []Pin{pinB}})
			if len(rec.Revoked) != 0 || len(rec.Ignored) != 1 || !rec.Ignored[0].Pin.Equal(pinB) {
				t.Fatalf("got revoked %v, ignored %v; want B ignored", rec.Revoked, rec.Ignored)
			}
			if e := mustLookup(t, store, srv.addr); len(e.Revoked) != 0 || !e.Set().Contains(pinB) {
				t.Fatalf("after the attack: got %v, want B still trusted", e)
			}
			// The attacker's key revoking itself is ignored too.
			rec = announce(t, tr, srv.addr, Announcement{Current: pinA, Next: []Pin{pinB}, Revoked: []Pin{pinA}})
			if len(rec.Revoked) != 0 || len(rec.Ignored) != 1 {
				t.Fatalf("self-revocation: got revoked %v, ignored %v; want it ignored", rec.Revoked, rec.Ignored)
			}

			// The real server on B, revoking A, is honoured.
			srv.setCert(tlsCert(keyB, certB))
			rec = announce(t, tr, srv.addr, Announcement{Current: pinB, Revoked: []Pin{pinA}})
			if !samePins(rec.Revoked, []Pin{pinA}) {
				t.Fatalf("got revoked %v, ignored %v; want A revoked by its successor", rec.Revoked, rec.Ignored)
			}
			// Now the attacker, back with A, is refused before it can
			// announce anything.
			srv.setCert(tlsCert(keyA, certA))
			before := mustRead(t, path)
			var re *RevokedKeyError
			if _, err := connect(t, tr, srv.addr); !errors.As(err, &re) {
				t.Fatalf("got %v, want a *RevokedKeyError", err)
			}
			if mustRead(t, path) != before {
				t.Error("a refused handshake changed the store")
			}
		})
	}
}

// After the client moved to B (and dropped A), a revocation of A by B has
// nothing on file to mark; one of a key never on file is ignored.
func TestRevocationNeedsThePinOnFile(t *testing.T) {
	keyA := mustKey(t)
	certA := mustLeaf(t, keyA)
	pinA, other := PinOf(certA), PinOfSPKI([]byte("never seen"))
	srv := startServer(t, serverSpec{cert: tlsCert(keyA, certA), version: tls.VersionTLS13})
	clock := newClock()
	tr, store, _ := tofuClient(t, srv.addr, clock)
	// First use, then a known host: a pin not on file is nothing to
	// revoke, and not worth a warning on every connection.
	for _, what := range []string{"first use", "known host"} {
		rec := announce(t, tr, srv.addr, Announcement{Current: pinA, Revoked: []Pin{other}})
		if len(rec.Revoked) != 0 || len(rec.Ignored) != 0 {
			t.Fatalf("%s: got revoked %v, ignored %v; want neither", what, rec.Revoked, rec.Ignored)
		}
	}
	if e := mustLookup(t, store, srv.addr); len(e.Revoked) != 0 {
		t.Fatalf("got %v, want no revoked mark", e)
	}
}

// A revoked pin is never learned again, neither as a next key nor by
// sc-cert pin add; forgetting the host keeps the mark, so that trust on
// first use never accepts the revoked key; unrevoke removes the mark.
func TestRevokedMarksStay(t *testing.T) {
	keyA, keyB := mustKey(t), mustKey(t)
	certA, certB := mustLeaf(t, keyA), mustLeaf(t, keyB)
	pinA, pinB := PinOf(certA), PinOf(certB)
	srv := startServer(t, serverSpec{cert: tlsCert(keyB, certB), version: tls.VersionTLS13})
	clock := newClock()
	tr, store, path := tofuClient(t, srv.addr, clock)
	announce(t, tr, srv.addr, Announcement{Current: pinB})
	changed, err := store.Revoke(srv.addr, pinA)
	if err != nil || !changed {
		t.Fatalf("Revoke: got (%v, %v), want (true, nil)", changed, err)
	}
	if r, ok := mustLookup(t, store, srv.addr).RevokedPin(pinA); !ok || r.Origin != OriginAdded {
		t.Fatalf("got %v, want A revoked via=added", r)
	}

	// The server announces A as its next key: not learned.
	rec := announce(t, tr, srv.addr, Announcement{Current: pinB, Next: []Pin{pinA}})
	if len(rec.Added) != 0 || mustLookup(t, store, srv.addr).Set().Contains(pinA) {
		t.Fatalf("a revoked pin was learned as a next key: %+v", rec)
	}
	if err := store.Add(srv.addr, pinA); !errors.Is(err, ErrPinRevoked) {
		t.Fatalf("adding a revoked pin: got %v, want ErrPinRevoked", err)
	}

	// Forget keeps the mark on a line of its own.
	if removed, err := store.Forget(srv.addr); err != nil || !removed {
		t.Fatalf("Forget: got (%v, %v)", removed, err)
	}
	e := mustLookup(t, store, srv.addr)
	if len(e.Pins) != 0 || len(e.Revoked) != 1 {
		t.Fatalf("after forget: got %v, want only the revoked mark", e)
	}
	if removed, err := store.Forget(srv.addr); err != nil || removed {
		t.Fatalf("forgetting a host with only revoked marks: got (%v, %v), want (false, nil)", removed, err)
	}
	// A fresh first use never accepts the revoked key...
	srv.setCert(tlsCert(keyA, certA))
	var re *RevokedKeyError
	if _, err := connect(t, tr, srv.addr); !errors.As(err, &re) {
		t.Fatalf("first use with a revoked key: got %v, want a *RevokedKeyError", err)
	}
	// ...but trusts another key on first use, keeping the mark.
	srv.setCert(tlsCert(keyB, certB))
	rec = announce(t, tr, srv.addr, Announcement{Current: pinB})
	if !rec.FirstUse {
		t.Errorf("got %+v, want a first use", rec)
	}
	state, err := connect(t, tr, srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Record(state); err != nil {
		t.Fatal(err)
	}
	e = mustLookup(t, store, srv.addr)
	if c, _ := e.Current(); !c.Pin.Equal(pinB) || len(e.Revoked) != 1 {
		t.Fatalf("got %v, want B current and A still revoked", e)
	}

	// Unrevoke removes the mark, and nothing else.
	if removed, err := store.Unrevoke(srv.addr, pinA); err != nil || !removed {
		t.Fatalf("Unrevoke: got (%v, %v)", removed, err)
	}
	if e := mustLookup(t, store, srv.addr); len(e.Revoked) != 0 || !e.Set().Equal(mustSet(t, pinB)) {
		t.Fatalf("after unrevoke: got %v", e)
	}
	if removed, err := store.Unrevoke(srv.addr, pinA); err != nil || removed {
		t.Fatalf("a second unrevoke: got (%v, %v), want (false, nil)", removed, err)
	}
	// A host with only a mark loses its line when the mark goes.
	if _, err := store.Revoke("other.example:1", pinA); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Unrevoke("other.example:1", pinA); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(mustRead(t, path), "other.example") {
		t.Errorf("an empty line was left:\n%s", mustRead(t, path))
	}
}

// A line with only revoked marks has no current= or backup= field, which
// the parser of versions before revocation refuses ("no pins"): such a
// version fails closed for the host, never trusting it on first use. A line
// with pins and marks keeps the marks as an unknown field, which the older
// parser keeps verbatim.
func TestRevokedLineEncoding(t *testing.T) {
	a, b := PinOfSPKI([]byte("a")), PinOfSPKI([]byte("b"))
	only := "game.example:4242 revoked=" + a.String() + ";first=2026-01-02T03:04:05Z;via=announced"
	e, err := ParseLine(only)
	if err != nil || len(e.Pins) != 0 || len(e.Revoked) != 1 || e.String() != only {
		t.Fatalf("ParseLine(%q): got (%v, %v)", only, e, err)
	}
	both := "game.example:4242 current=" + b.String() + ";via=first-use revoked=" + a.String() + ";via=added;later=1 note=x"
	e, err = ParseLine(both)
	if err != nil || e.String() != both || !e.Set().Equal(mustSet(t, b)) {
		t.Fatalf("ParseLine(%q): got (%v, %v)", both, e, err)
	}
	// A line an older version wrote, trusting a pin that is also marked
	// revoked (it learned it again): the mark wins.
	e, err = ParseLine("game.example:4242 current=" + b.String() + " backup=" + a.String() + " revoked=" + a.String())
	if err != nil || e.Set().Contains(a) {
		t.Fatalf("got (%v, %v), want a parsed line that does not trust the revoked pin", e, err)
	}
	for _, bad := range []string{
		"h:1 revoked=" + a.String() + " revoked=" + a.String(),
		"h:1 revoked=nope",
		"h:1 revoked=" + a.String() + ";first=yesterday",
	} {
		if _, err := ParseLine(bad); err == nil {
			t.Errorf("ParseLine(%q): got nil error", bad)
		}
	}
}

// Pin mode: a revoked pin is refused in the handshake, and a pin both
// trusted and revoked is refused at start.
func TestConfiguredRevokedPins(t *testing.T) {
	key := mustKey(t)
	leaf := mustLeaf(t, key)
	pin, other := PinOf(leaf), PinOfSPKI([]byte("other"))
	srv := startServer(t, serverSpec{cert: tlsCert(key, leaf), version: tls.VersionTLS13})
	if _, err := NewTrust(TrustOptions{Mode: ModePin, Pins: mustSet(t, pin, other), Revoked: []Pin{other}}); err == nil || !strings.Contains(err.Error(), "both trusted and revoked") {
		t.Fatalf("a pin both trusted and revoked: got %v", err)
	}
	tr := mustTrust(t, TrustOptions{Mode: ModePin, Pins: mustSet(t, other), Revoked: []Pin{pin}, Host: srv.addr})
	var re *RevokedKeyError
	if _, err := connect(t, tr, srv.addr); !errors.As(err, &re) || re.Path != "" || !strings.Contains(re.Error(), "revoked in the configuration") {
		t.Fatalf("got %v, want a *RevokedKeyError from the configuration", err)
	}
	ok := mustTrust(t, TrustOptions{Mode: ModePin, Pins: mustSet(t, pin), Revoked: []Pin{other}, Host: srv.addr})
	if _, err := connect(t, ok, srv.addr); err != nil {
		t.Fatalf("a pin not revoked: %v", err)
	}
}

// A store written before revocation existed reads back byte for byte, and
// keeps doing so when other hosts are revoked and forgotten. Its pins have
// no after= links: a revocation between two pins added together is
// ignored, whichever key announces it, since nothing says which is newer.
func TestStoreFromBeforeRevocation(t *testing.T) {
	old, err := os.ReadFile(filepath.Join("testdata", "known_hosts.before-revocation"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "known_hosts")
	mustWrite(t, path, string(old))
	clock := newClock()
	s := mustStore(t, path, clock.Now)
	entries, problems, err := s.List()
	if err != nil || len(problems) != 0 || len(entries) != 3 {
		t.Fatalf("List: %d entries, problems %v, err %v", len(entries), problems, err)
	}
	for _, e := range entries {
		if !strings.Contains(string(old), e.String()+"\n") {
			t.Errorf("entry does not render back as written:\n%s", e.String())
		}
	}
	if _, err := s.Revoke("new.example:1", PinOfSPKI([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Forget("new.example:1"); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, path); !strings.HasPrefix(got, string(old)) {
		t.Fatalf("the old lines changed:\n%s", got)
	}

	// game.example: two pins added together, no order between them.
	e := mustLookup(t, s, "game.example:4242")
	cur, _ := e.Current()
	var other Pin
	for _, r := range e.Pins {
		if !r.Current {
			other = r.Pin
		}
	}
	for _, tt := range []struct {
		name              string
		verified, revoked Pin
	}{
		{"current revokes backup", cur.Pin, other},
		{"backup revokes current", other, cur.Pin},
	} {
		rec, err := s.recordAnnounced("game.example:4242", tt.verified, nil, []Pin{tt.revoked}, clock.Now(), false)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if len(rec.Revoked) != 0 || len(rec.Ignored) != 1 {
			t.Errorf("%s: got revoked %v, ignored %v; want it ignored", tt.name, rec.Revoked, rec.Ignored)
		}
	}
	// A pin a person added later, while the other was on file, succeeds it.
	clock.Advance(time.Hour)
	later := PinOfSPKI([]byte("later"))
	if err := s.Add("[::1]:4242", later); err != nil {
		t.Fatal(err)
	}
	first := mustLookup(t, s, "[::1]:4242").Pins[0].Pin
	rec, err := s.recordAnnounced("[::1]:4242", later, nil, []Pin{first}, clock.Now(), false)
	if err != nil || !samePins(rec.Revoked, []Pin{first}) {
		t.Fatalf("a later added key revoking the older: got %+v, %v", rec, err)
	}
}
