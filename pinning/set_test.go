package pinning

import (
	"strings"
	"testing"
)

func TestParseSet(t *testing.T) {
	a, b, c := PinOfSPKI([]byte("a")), PinOfSPKI([]byte("b")), PinOfSPKI([]byte("c"))
	tests := []struct {
		name  string
		in    []string
		want  []Pin
		error string
	}{
		{name: "one pin", in: []string{a.String()}, want: []Pin{a}},
		{name: "curl list", in: []string{a.String() + ";" + b.String()}, want: []Pin{a, b}},
		{name: "repeated flag", in: []string{a.String(), b.String(), c.String()}, want: []Pin{a, b, c}},
		{name: "commas, spaces and a trailing separator", in: []string{" " + a.String() + ", " + b.Hex() + " ;"}, want: []Pin{a, b}},
		{name: "duplicates dropped, first position kept", in: []string{b.String(), a.String() + ";" + b.Base64()}, want: []Pin{b, a}},
		{name: "no arguments", in: nil, error: "no pins given"},
		{name: "only separators", in: []string{" ;, "}, error: "no pins given"},
		{name: "one bad pin spoils the set", in: []string{a.String() + ";sha256//nope"}, error: "parsing pin set: parsing pin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSet(tt.in...)
			if tt.error != "" {
				if err == nil || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("got error %v, want one containing %q", err, tt.error)
				}
				if !got.IsEmpty() {
					t.Errorf("got set %v with an error, want the empty set", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want, err := NewSet(tt.want[0], tt.want[1:]...)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(want) {
				t.Errorf("got %v, want %v", got, want)
			}
			if !got.Current().Equal(tt.want[0]) {
				t.Errorf("current: got %v, want %v", got.Current(), tt.want[0])
			}
			if got.Len() != len(tt.want) || len(got.Backups()) != len(tt.want)-1 {
				t.Errorf("got %d pins and %d backups, want %d and %d", got.Len(), len(got.Backups()), len(tt.want), len(tt.want)-1)
			}
		})
	}
}

func TestSetContains(t *testing.T) {
	a, b, c := PinOfSPKI([]byte("a")), PinOfSPKI([]byte("b")), PinOfSPKI([]byte("c"))
	s, err := NewSet(a, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		pin  Pin
		want bool
	}{
		{"current", a, true},
		{"backup", b, true},
		{"other", c, false},
		{"zero pin", Pin{}, false},
	} {
		if got := s.Contains(tt.pin); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	if (Set{}).Contains(a) {
		t.Error("the zero Set matched a pin")
	}
	key := mustKey(t)
	cert := mustLeaf(t, key)
	withCert, err := NewSet(c, PinOf(cert))
	if err != nil {
		t.Fatal(err)
	}
	if !withCert.ContainsKeyOf(cert) || s.ContainsKeyOf(cert) {
		t.Error("ContainsKeyOf disagrees with the certificate's pin")
	}
}

func TestSetIsImmutable(t *testing.T) {
	a, b := PinOfSPKI([]byte("a")), PinOfSPKI([]byte("b"))
	s, err := NewSet(a, b)
	if err != nil {
		t.Fatal(err)
	}
	s.Pins()[0] = b
	s.Backups()[0] = a
	if !s.Current().Equal(a) || !s.Backups()[0].Equal(b) {
		t.Error("changing a returned slice changed the set")
	}
}

func TestNewSetRejectsZeroPin(t *testing.T) {
	if _, err := NewSet(Pin{}); err == nil {
		t.Error("got no error for a zero current pin")
	}
	if _, err := NewSet(PinOfSPKI([]byte("a")), Pin{}); err == nil {
		t.Error("got no error for a zero backup pin")
	}
}

func TestSetTextRoundTrip(t *testing.T) {
	s, err := ParseSet(PinOfSPKI([]byte("a")).String(), PinOfSPKI([]byte("b")).Hex())
	if err != nil {
		t.Fatal(err)
	}
	text, err := s.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	var got Set
	if err := got.UnmarshalText(text); err != nil {
		t.Fatal(err)
	}
	if !got.Equal(s) {
		t.Errorf("got %v, want %v", got, s)
	}
}

// FuzzParseSet checks that any set ParseSet accepts renders to a string that
// parses back to the same set, and that the rendering is stable.
func FuzzParseSet(f *testing.F) {
	a, b := PinOfSPKI([]byte("a")), PinOfSPKI([]byte("b"))
	f.Add(a.String() + ";" + b.String())
	f.Add(a.Hex() + ", " + b.Base64())
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSet(in)
		if err != nil {
			return
		}
		if s.IsEmpty() {
			t.Fatal("parsed an empty set without error")
		}
		text := s.String()
		again, err := ParseSet(text)
		if err != nil {
			t.Fatalf("reparsing %q: %v", text, err)
		}
		if !again.Equal(s) {
			t.Fatalf("round trip of %q: got %v, want %v", in, again, s)
		}
		if again.String() != text {
			t.Fatalf("rendering is not stable: got %q, want %q", again.String(), text)
		}
	})
}
