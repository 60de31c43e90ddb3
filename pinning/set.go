package pinning

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// Set is a pin set: the current pin and any number of backup pins, in the
// order given. Any match is a match; the current/backup distinction is for
// people (which key the server uses today, which one it will move to), not
// for the check. A Set holds no zero pin and no pin twice.
//
// The zero Set is empty and matches nothing. A Set is an immutable value,
// safe for concurrent use.
type Set struct {
	pins []Pin // pins[0] is the current pin
}

// pinSeparators split a pin list. ";" is curl's --pinnedpubkey separator;
// "," and white space are accepted for command lines and config files. None
// of them occurs in a pin (base64 or hex).
const pinSeparators = ";, \t\r\n"

// NewSet returns the set of current and backups. Duplicates are dropped; a
// zero pin is an error, because it names no key and would make a set that
// looks configured but can match nothing.
func NewSet(current Pin, backups ...Pin) (Set, error) {
	var s Set
	for i, p := range append([]Pin{current}, backups...) {
		if p.IsZero() {
			return Set{}, fmt.Errorf("building pin set: pin %d is the zero pin, which names no key", i+1)
		}
		if !s.Contains(p) {
			s.pins = append(s.pins, p)
		}
	}
	return s, nil
}

// ParseSet parses pins written as [ParsePin] accepts them, each argument one
// pin or a list separated by ";" (as curl's --pinnedpubkey takes them), ","
// or white space. The first pin is the current one. Duplicates are dropped;
// an input with no pin at all is an error.
func ParseSet(lists ...string) (Set, error) {
	var s Set
	for _, list := range lists {
		for _, field := range strings.FieldsFunc(list, func(r rune) bool { return strings.ContainsRune(pinSeparators, r) }) {
			p, err := ParsePin(field)
			if err != nil {
				return Set{}, fmt.Errorf("parsing pin set: %w", err)
			}
			if !s.Contains(p) {
				s.pins = append(s.pins, p)
			}
		}
	}
	if len(s.pins) == 0 {
		return Set{}, errors.New("parsing pin set: no pins given: want sha256//BASE64, several separated by \";\"")
	}
	return s, nil
}

// Current returns the current pin, or the zero Pin for an empty set.
func (s Set) Current() Pin {
	if len(s.pins) == 0 {
		return Pin{}
	}
	return s.pins[0]
}

// Backups returns a copy of the backup pins.
func (s Set) Backups() []Pin {
	if len(s.pins) < 2 {
		return nil
	}
	return append([]Pin(nil), s.pins[1:]...)
}

// Pins returns a copy of all pins, the current one first.
func (s Set) Pins() []Pin {
	return append([]Pin(nil), s.pins...)
}

// Len returns the number of pins in the set.
func (s Set) Len() int { return len(s.pins) }

// IsEmpty reports whether the set holds no pin.
func (s Set) IsEmpty() bool { return len(s.pins) == 0 }

// Contains reports whether p is in the set. It compares p with every pin in
// constant time, and does not stop at the first match.
func (s Set) Contains(p Pin) bool {
	found := false
	for _, q := range s.pins {
		if q.Equal(p) {
			found = true
		}
	}
	return found
}

// ContainsKeyOf reports whether the key of cert is in the set.
func (s Set) ContainsKeyOf(cert *x509.Certificate) bool {
	return s.Contains(PinOf(cert))
}

// Equal reports whether s and t hold the same pins in the same order.
func (s Set) Equal(t Set) bool {
	if len(s.pins) != len(t.pins) {
		return false
	}
	for i := range s.pins {
		if !s.pins[i].Equal(t.pins[i]) {
			return false
		}
	}
	return true
}

// String returns the pins in curl's --pinnedpubkey list form, the current
// one first: "sha256//A;sha256//B". [ParseSet] reads it back.
func (s Set) String() string {
	parts := make([]string, len(s.pins))
	for i, p := range s.pins {
		parts[i] = p.String()
	}
	return strings.Join(parts, ";")
}

// MarshalText implements [encoding.TextMarshaler] with the [Set.String] form.
func (s Set) MarshalText() ([]byte, error) {
	return []byte(s.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseSet].
func (s *Set) UnmarshalText(text []byte) error {
	t, err := ParseSet(string(text))
	if err != nil {
		return err
	}
	*s = t
	return nil
}
