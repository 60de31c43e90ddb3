package pinning

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"unicode/utf8"
)

// MaxClientNameLen is the longest client name kept: a name from an allow
// list longer than this is refused, one from a certificate is cut.
const MaxClientNameLen = 64

// ValidClientName reports whether name may name a client: 1 to
// [MaxClientNameLen] characters of ASCII letters, digits and ". _ - @ +".
// Names appear in log lines and in the KEYS reply, one line per client:
// the restriction keeps a newline or a control character out of both.
func ValidClientName(name string) bool {
	if name == "" || len(name) > MaxClientNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return false
		}
	}
	return true
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-@+", c) >= 0
}

// SafeClientName turns a name from outside (a certificate's subject) into
// one [ValidClientName] accepts: every other byte becomes '_' and the name
// is cut to [MaxClientNameLen]. It returns "" for an empty name.
func SafeClientName(s string) string {
	if len(s) > MaxClientNameLen {
		s = s[:MaxClientNameLen]
	}
	b := []byte(s)
	for i, c := range b {
		if !nameByte(c) {
			b[i] = '_'
		}
	}
	return string(b)
}

// AllowEntry is one line of an allow list: a client key's pin, and the
// name the server gives the client in logs and KEYS.
type AllowEntry struct {
	Pin Pin
	// Name is the client's name, or "" for none.
	Name string
	// Comment is the free text after the pin and the name.
	Comment string
}

// String renders e as an allow list line, without the newline.
func (e AllowEntry) String() string {
	s := e.Pin.String()
	if e.Name != "" {
		s += " name=" + e.Name
	}
	if e.Comment != "" {
		s += " " + e.Comment
	}
	return s
}

// AllowList is a parsed allow list. Lookups are map lookups: O(1) in the
// size of the list.
type AllowList struct {
	Entries []AllowEntry
	index   map[Pin]int
}

// Lookup returns the entry of pin p.
func (l *AllowList) Lookup(p Pin) (AllowEntry, bool) {
	if l == nil {
		return AllowEntry{}, false
	}
	i, ok := l.index[p]
	if !ok {
		return AllowEntry{}, false
	}
	return l.Entries[i], true
}

// Len returns the number of entries.
func (l *AllowList) Len() int {
	if l == nil {
		return 0
	}
	return len(l.Entries)
}

// ParseAllowList parses an allow list, the server's list of admitted
// client keys, one per line in the manner of OpenSSH's authorized_keys:
//
//	# comment
//	sha256//BASE64 [name=NAME] [comment...]
//
// The pin may also be written in hex (see [ParsePin]); NAME must satisfy
// [ValidClientName]. Blank lines and lines starting with "#" are ignored;
// a pin listed twice is an error. Errors are [*ListError] values naming
// the line.
func ParseAllowList(data []byte) (*AllowList, error) {
	n := bytes.Count(data, []byte{'\n'}) + 1
	l := &AllowList{index: make(map[Pin]int, n), Entries: make([]AllowEntry, 0, n)}
	err := eachLine(data, func(n int, fields []string, comment string) error {
		p, err := parseListPin(fields[0])
		if err != nil {
			return err
		}
		e := AllowEntry{Pin: p}
		rest := fields[1:]
		if len(rest) > 0 && strings.HasPrefix(rest[0], "name=") {
			e.Name = strings.TrimPrefix(rest[0], "name=")
			if !ValidClientName(e.Name) {
				return fmt.Errorf("name %q: want 1 to %d letters, digits or . _ - @ +", e.Name, MaxClientNameLen)
			}
			rest = rest[1:]
		}
		if len(rest) > 0 || comment != "" {
			e.Comment = strings.TrimSpace(strings.Join(rest, " ") + comment)
		}
		if prev, dup := l.index[p]; dup {
			return fmt.Errorf("pin %v is already listed (entry %d)", p, prev+1)
		}
		l.index[p] = len(l.Entries)
		l.Entries = append(l.Entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Render returns l as the text of an allow list file.
func (l *AllowList) Render() []byte {
	var b bytes.Buffer
	for _, e := range l.Entries {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// RevokeEntry is one line of a revoke list: a key's pin, or a certificate
// serial number qualified by the pin of its issuer's key (serial numbers
// are unique only per issuer).
type RevokeEntry struct {
	// Pin is the revoked key, or the zero Pin for a serial entry.
	Pin Pin
	// Serial is the revoked certificate's serial number, lowercase hex
	// without colons, or "" for a pin entry; Issuer is then the pin of the
	// key of the CA that issued it.
	Serial string
	Issuer Pin
	// Comment is the free text after the entry.
	Comment string
}

// String renders e as a revoke list line, without the newline.
func (e RevokeEntry) String() string {
	var s string
	if e.Serial != "" {
		s = "serial=" + e.Serial + " issuer=" + e.Issuer.String()
	} else {
		s = e.Pin.String()
	}
	if e.Comment != "" {
		s += " " + e.Comment
	}
	return s
}

// serialKey identifies a certificate by issuer and serial.
type serialKey struct {
	issuer Pin
	serial string
}

// RevokeList is a parsed revoke list.
type RevokeList struct {
	Entries []RevokeEntry
	pins    map[Pin]struct{}
	serials map[serialKey]struct{}
	// bySerial holds the serials alone, a quick first test.
	bySerial map[string]struct{}
}

// Len returns the number of entries.
func (l *RevokeList) Len() int {
	if l == nil {
		return 0
	}
	return len(l.Entries)
}

// HasPin reports whether key pin p is revoked.
func (l *RevokeList) HasPin(p Pin) bool {
	if l == nil {
		return false
	}
	_, ok := l.pins[p]
	return ok
}

// HasSerial reports whether the certificate with serial number serial
// issued by the CA whose key's pin is issuer is revoked.
func (l *RevokeList) HasSerial(issuer Pin, serial *big.Int) bool {
	if l == nil || len(l.serials) == 0 || serial == nil {
		return false
	}
	_, ok := l.serials[serialKey{issuer, serial.Text(16)}]
	return ok
}

// mayHaveSerial reports whether some issuer's serial serial is revoked.
func (l *RevokeList) mayHaveSerial(serial *big.Int) bool {
	if l == nil || len(l.bySerial) == 0 || serial == nil {
		return false
	}
	_, ok := l.bySerial[serial.Text(16)]
	return ok
}

// ParseSerial parses a certificate serial number written in hex, with or
// without colons or a 0x prefix (as openssl and sc-cert inspect print
// it), and returns it as lowercase hex without leading zeros.
func ParseSerial(s string) (string, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(s), "0x"), "serial=")
	t = strings.ReplaceAll(t, ":", "")
	if t == "" || len(t) > 64 {
		return "", fmt.Errorf("serial %q: want 1 to 40 bytes in hex, e.g. 3a:f1:07", s)
	}
	if len(t)%2 == 1 {
		t = "0" + t
	}
	b, err := hex.DecodeString(t)
	if err != nil {
		return "", fmt.Errorf("serial %q: want hex digits, e.g. 3a:f1:07", s)
	}
	return new(big.Int).SetBytes(b).Text(16), nil
}

// ParseRevokeList parses a revoke list, one entry per line:
//
//	# comment
//	sha256//BASE64 [comment...]
//	serial=HEX issuer=sha256//BASE64 [comment...]
//
// The first form revokes a key wherever it is presented; the second, one
// certificate, by its serial number and the pin of its issuer's key.
// Blank lines and lines starting with "#" are ignored; an entry listed
// twice is kept once. Errors are [*ListError] values naming the line.
func ParseRevokeList(data []byte) (*RevokeList, error) {
	l := &RevokeList{pins: map[Pin]struct{}{}, serials: map[serialKey]struct{}{}, bySerial: map[string]struct{}{}}
	err := eachLine(data, func(n int, fields []string, comment string) error {
		var e RevokeEntry
		rest := fields[1:]
		if strings.HasPrefix(fields[0], "serial=") {
			serial, err := ParseSerial(strings.TrimPrefix(fields[0], "serial="))
			if err != nil {
				return err
			}
			if len(rest) == 0 || !strings.HasPrefix(rest[0], "issuer=") {
				return errors.New("a serial needs its issuer: serial=HEX issuer=sha256//PIN-OF-THE-CA-KEY (serial numbers are unique only per issuer)")
			}
			issuer, err := ParsePin(strings.TrimPrefix(rest[0], "issuer="))
			if err != nil {
				return fmt.Errorf("issuer: %w", err)
			}
			e.Serial, e.Issuer, rest = serial, issuer, rest[1:]
		} else {
			p, err := parseListPin(fields[0])
			if err != nil {
				return fmt.Errorf("%w (or serial=HEX issuer=PIN)", err)
			}
			e.Pin = p
		}
		e.Comment = strings.TrimSpace(strings.Join(rest, " ") + comment)
		if e.Serial != "" {
			k := serialKey{e.Issuer, e.Serial}
			if _, dup := l.serials[k]; dup {
				return nil
			}
			l.serials[k] = struct{}{}
			l.bySerial[e.Serial] = struct{}{}
		} else {
			if _, dup := l.pins[e.Pin]; dup {
				return nil
			}
			l.pins[e.Pin] = struct{}{}
		}
		l.Entries = append(l.Entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Render returns l as the text of a revoke list file.
func (l *RevokeList) Render() []byte {
	var b bytes.Buffer
	for _, e := range l.Entries {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ListError is a line of an allow or revoke list that does not parse.
type ListError struct {
	// Path is the file, when known.
	Path string
	// Line is the 1-based line number.
	Line int
	Err  error
}

func (e *ListError) Error() string {
	where := "line"
	if e.Path != "" {
		where = e.Path + ": line"
	}
	return fmt.Sprintf("%s %d: %v", where, e.Line, e.Err)
}

func (e *ListError) Unwrap() error { return e.Err }

// parseListPin parses a list's pin: the canonical sha256//BASE64 form
// without allocating (lists hold 100,000 of them), anything else through
// [ParsePin].
func parseListPin(s string) (Pin, error) {
	var p Pin
	if len(s) == len(pinPrefix)+44 && s[:len(pinPrefix)] == pinPrefix {
		var buf [33]byte
		if n, err := strictBase64.Decode(buf[:], []byte(s[len(pinPrefix):])); err == nil && n == sha256.Size {
			copy(p.sum[:], buf[:n])
			if !p.IsZero() {
				return p, nil
			}
		}
	}
	return ParsePin(s)
}

var strictBase64 = base64.StdEncoding.Strict()

// eachLine calls fn with the fields of every line that is not blank or a
// comment, and the comment that follows a " #" on it (with its " #").
func eachLine(data []byte, fn func(n int, fields []string, comment string) error) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if !validText(line) {
			return &ListError{Line: n, Err: errors.New("holds a control character or invalid UTF-8")}
		}
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		comment := ""
		if i := strings.Index(t, " #"); i >= 0 {
			t, comment = t[:i], t[i:]
		}
		if err := fn(n, strings.Fields(t), comment); err != nil {
			return &ListError{Line: n, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		return &ListError{Line: n + 1, Err: fmt.Errorf("line too long (at most 64 KiB): %w", err)}
	}
	return nil
}

// validText reports whether a line is UTF-8 with no control characters
// but tabs.
func validText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}

// pinOfIssuer returns the pin of the key of the certificate that issued
// chain[0] in a verified chain, or of chain[0] itself when it stands
// alone.
func pinOfIssuer(chain []*x509.Certificate) Pin {
	if len(chain) > 1 {
		return PinOf(chain[1])
	}
	return PinOf(chain[0])
}
