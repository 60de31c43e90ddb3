package pinning

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Origin says how a pin got into the store (the via= attribute of the
// file). It decides what a verified
// announcement may remove: pins that were learned (on first use or from an
// announcement) follow what the server announces; pins added by a person, or
// of unknown origin, stay until that person forgets the host.
type Origin string

const (
	// OriginFirstUse marks the pin recorded when the host was first seen.
	OriginFirstUse Origin = "first-use"
	// OriginAnnounced marks a pin learned from the server's own
	// announcement of its keys, made inside a verified session.
	OriginAnnounced Origin = "announced"
	// OriginAdded marks a pin added by a person (sc-cert pin add).
	OriginAdded Origin = "added"
)

// learned reports whether a pin of this origin was learned automatically,
// and so may be dropped automatically when the server stops announcing it.
func (o Origin) learned() bool {
	return o == OriginFirstUse || o == OriginAnnounced
}

// PinRecord is one pin of a host in the store, with its role and history.
type PinRecord struct {
	// Pin is the key's pin.
	Pin Pin
	// Current marks the key the host used at the last verified handshake
	// (or was first added with); the others are backups. Any of them is
	// accepted.
	Current bool
	// FirstSeen is when the pin was recorded; zero if unknown.
	FirstSeen time.Time
	// LastSeen is when a verified handshake last presented this key; zero
	// if it never has (a backup not yet in use).
	LastSeen time.Time
	// Origin says how the pin got into the store; empty if unknown.
	Origin Origin
	// After is the pin that was the host's current key when this one was
	// recorded as a backup (announced by that key, or added by a person
	// while it was current): this key is its successor. Zero if unknown,
	// and for the first pin of a host. It decides which key may revoke
	// which (see [Trust.RecordAnnouncement]).
	After Pin

	// extra holds attributes this version does not know, kept verbatim.
	extra []string
}

// RevokedRecord is a pin revoked for a host: never trusted again for it,
// whatever a later announcement says, until a person removes the mark
// ([Store.Unrevoke]).
type RevokedRecord struct {
	// Pin is the revoked key's pin.
	Pin Pin
	// FirstSeen is when the client learned of the revocation; zero if
	// unknown.
	FirstSeen time.Time
	// Origin says who revoked it: [OriginAnnounced] (the server's
	// operator, through KEYS) or [OriginAdded] (a person, with sc-cert pin
	// revoke).
	Origin Origin

	// extra holds attributes this version does not know, kept verbatim.
	extra []string
}

func (r PinRecord) role() string {
	if r.Current {
		return roleCurrent
	}
	return roleBackup
}

// Entry is one host's line in the store.
type Entry struct {
	// Host is the server as "host:port", in canonical form: a lower-case
	// name or a normalized IP address (IPv6 in brackets), and a decimal
	// port.
	Host string
	// Pins are the host's pins in file order. An entry may have none when
	// it holds only revoked marks (a host forgotten after a revocation):
	// the host is then unknown, but its revoked keys are still refused.
	Pins []PinRecord
	// Revoked are the pins revoked for the host, in file order. A pin
	// both in Pins and here is revoked: the mark wins.
	Revoked []RevokedRecord
	// Line is the entry's line number in the store file, from 1; zero for
	// an entry that is not from a file.
	Line int

	// extra holds fields this version does not know, kept verbatim, and a
	// trailing comment (starting with "#") last.
	extra []string
}

// Set returns the entry's pins as a [Set]: the current pin first, then the
// backups in file order. Revoked pins are left out.
func (e Entry) Set() Set {
	var s Set
	for _, r := range e.Pins {
		if _, revoked := e.RevokedPin(r.Pin); revoked {
			continue
		}
		if r.Current {
			s.pins = append([]Pin{r.Pin}, s.pins...)
		} else {
			s.pins = append(s.pins, r.Pin)
		}
	}
	return s
}

// Current returns the entry's current pin record, if it has one.
func (e Entry) Current() (PinRecord, bool) {
	for _, r := range e.Pins {
		if r.Current {
			return r, true
		}
	}
	return PinRecord{}, false
}

// RevokedPin returns the revoked mark of p, if p is revoked for the host.
func (e Entry) RevokedPin(p Pin) (RevokedRecord, bool) {
	for _, r := range e.Revoked {
		if r.Pin.Equal(p) {
			return r, true
		}
	}
	return RevokedRecord{}, false
}

// index returns the position of p in e.Pins, or -1.
func (e Entry) index(p Pin) int {
	for i, r := range e.Pins {
		if r.Pin.Equal(p) {
			return i
		}
	}
	return -1
}

// clone returns a deep copy of e, so that a caller's copy and the store's
// never share slices.
func (e Entry) clone() Entry {
	c := e
	c.Pins = make([]PinRecord, len(e.Pins))
	for i, r := range e.Pins {
		r.extra = append([]string(nil), r.extra...)
		c.Pins[i] = r
	}
	c.Revoked = make([]RevokedRecord, len(e.Revoked))
	for i, r := range e.Revoked {
		r.extra = append([]string(nil), r.extra...)
		c.Revoked[i] = r
	}
	c.extra = append([]string(nil), e.extra...)
	return c
}

// The store's line format; see the package documentation, "The known hosts
// file".
const (
	roleCurrent = "current"
	roleBackup  = "backup"
	attrFirst   = "first"
	attrLast    = "last"
	attrOrigin  = "via"
	attrAfter   = "after"
	// fieldRevoked is a field of its own, never an attribute of a pin:
	// versions before revocation read a pin field's unknown attributes as
	// extras of a pin they accept, but keep an unknown field verbatim
	// without trusting anything in it.
	fieldRevoked = "revoked"
	// timeLayout is RFC 3339 in UTC with whole seconds: one spelling per
	// instant, so a parsed line renders back to the same text.
	timeLayout = "2006-01-02T15:04:05Z"
)

// String returns the entry as a line of the store file, without the
// newline: the host, one field per pin, then any fields and comment this
// version does not know, kept as they were read. [ParseLine] reads it back.
func (e Entry) String() string {
	var b strings.Builder
	b.WriteString(e.Host)
	for _, r := range e.Pins {
		b.WriteByte(' ')
		b.WriteString(r.role())
		b.WriteByte('=')
		b.WriteString(r.Pin.String())
		if !r.FirstSeen.IsZero() {
			b.WriteString(";" + attrFirst + "=" + r.FirstSeen.UTC().Format(timeLayout))
		}
		if !r.LastSeen.IsZero() {
			b.WriteString(";" + attrLast + "=" + r.LastSeen.UTC().Format(timeLayout))
		}
		if r.Origin != "" {
			b.WriteString(";" + attrOrigin + "=" + string(r.Origin))
		}
		if !r.After.IsZero() {
			b.WriteString(";" + attrAfter + "=" + r.After.String())
		}
		for _, x := range r.extra {
			b.WriteByte(';')
			b.WriteString(x)
		}
	}
	for _, r := range e.Revoked {
		b.WriteString(" " + fieldRevoked + "=")
		b.WriteString(r.Pin.String())
		if !r.FirstSeen.IsZero() {
			b.WriteString(";" + attrFirst + "=" + r.FirstSeen.UTC().Format(timeLayout))
		}
		if r.Origin != "" {
			b.WriteString(";" + attrOrigin + "=" + string(r.Origin))
		}
		for _, x := range r.extra {
			b.WriteByte(';')
			b.WriteString(x)
		}
	}
	for _, x := range e.extra {
		b.WriteByte(' ')
		b.WriteString(x)
	}
	return b.String()
}

// Line returns a store line for host ("host:port") with current as its
// current pin and backups as backup pins, marked as added by a person and
// with no times: what a person would append to the file by hand.
func Line(host string, current Pin, backups ...Pin) (string, error) {
	h, err := canonicalHost(host)
	if err != nil {
		return "", err
	}
	set, err := NewSet(current, backups...)
	if err != nil {
		return "", err
	}
	e := Entry{Host: h}
	for i, p := range set.pins {
		e.Pins = append(e.Pins, PinRecord{Pin: p, Current: i == 0, Origin: OriginAdded})
	}
	return e.String(), nil
}

// ParseLine parses one entry line of the store file (not a comment or a
// blank line). Its errors say what is wrong with which field; the store adds
// the file and line number (see [LineError]).
func ParseLine(line string) (Entry, error) {
	fields := splitFields(line)
	if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
		return Entry{}, errors.New("not an entry: a blank line or a comment")
	}
	host, err := canonicalHost(fields[0])
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Host: host}
	for i, f := range fields[1:] {
		if strings.HasPrefix(f, "#") {
			// A trailing comment runs to the end of the line.
			e.extra = append(e.extra, strings.Join(fields[1+i:], " "))
			break
		}
		name, value, ok := strings.Cut(f, "=")
		if !ok || !validFieldName(name) {
			return Entry{}, fmt.Errorf("field %d %q: want current=PIN, backup=PIN or NAME=VALUE", i+2, f)
		}
		if name == fieldRevoked {
			r, err := parseRevokedField(value)
			if err != nil {
				return Entry{}, fmt.Errorf("field %d: %w", i+2, err)
			}
			if _, dup := e.RevokedPin(r.Pin); dup {
				return Entry{}, fmt.Errorf("field %d: revoked pin %v appears twice", i+2, r.Pin)
			}
			e.Revoked = append(e.Revoked, r)
			continue
		}
		if name != roleCurrent && name != roleBackup {
			e.extra = append(e.extra, f)
			continue
		}
		r, err := parsePinField(name, value)
		if err != nil {
			return Entry{}, fmt.Errorf("field %d: %w", i+2, err)
		}
		if e.index(r.Pin) >= 0 {
			return Entry{}, fmt.Errorf("field %d: pin %v appears twice", i+2, r.Pin)
		}
		if r.Current {
			if _, ok := e.Current(); ok {
				return Entry{}, fmt.Errorf("field %d: a second current pin: want one current pin, the others backup", i+2)
			}
		}
		e.Pins = append(e.Pins, r)
	}
	if len(e.Pins) == 0 && len(e.Revoked) == 0 {
		return Entry{}, fmt.Errorf("no pins for %s: want at least one current=PIN or backup=PIN field", host)
	}
	return e, nil
}

// parseRevokedField parses the value of a revoked= field:
// PIN[;first=TIME][;via=SOURCE][;NAME=VALUE]...
func parseRevokedField(value string) (RevokedRecord, error) {
	parts := strings.Split(value, ";")
	p, err := ParsePin(parts[0])
	if err != nil {
		return RevokedRecord{}, fmt.Errorf("revoked: %w", err)
	}
	r := RevokedRecord{Pin: p}
	seen := map[string]bool{}
	for _, a := range parts[1:] {
		name, v, ok := strings.Cut(a, "=")
		if !ok || !validFieldName(name) {
			return RevokedRecord{}, fmt.Errorf("revoked pin %v: attribute %q: want NAME=VALUE", p, a)
		}
		if seen[name] {
			return RevokedRecord{}, fmt.Errorf("revoked pin %v: attribute %q appears twice", p, name)
		}
		seen[name] = true
		switch name {
		case attrFirst:
			t, err := parseTime(v)
			if err != nil {
				return RevokedRecord{}, fmt.Errorf("revoked pin %v: %s: %w", p, name, err)
			}
			r.FirstSeen = t
		case attrOrigin:
			if v == "" || strings.ContainsAny(v, ";= \t") {
				return RevokedRecord{}, fmt.Errorf("revoked pin %v: %s %q: want a word such as %s", p, name, v, OriginAdded)
			}
			r.Origin = Origin(v)
		default:
			r.extra = append(r.extra, a)
		}
	}
	return r, nil
}

// parsePinField parses the value of a current= or backup= field:
// PIN[;first=TIME][;last=TIME][;via=SOURCE][;NAME=VALUE]...
func parsePinField(role, value string) (PinRecord, error) {
	parts := strings.Split(value, ";")
	p, err := ParsePin(parts[0])
	if err != nil {
		return PinRecord{}, err
	}
	r := PinRecord{Pin: p, Current: role == roleCurrent}
	seen := map[string]bool{}
	for _, a := range parts[1:] {
		name, v, ok := strings.Cut(a, "=")
		if !ok || !validFieldName(name) {
			return PinRecord{}, fmt.Errorf("pin %v: attribute %q: want NAME=VALUE", p, a)
		}
		if seen[name] {
			return PinRecord{}, fmt.Errorf("pin %v: attribute %q appears twice", p, name)
		}
		seen[name] = true
		switch name {
		case attrFirst, attrLast:
			t, err := parseTime(v)
			if err != nil {
				return PinRecord{}, fmt.Errorf("pin %v: %s: %w", p, name, err)
			}
			if name == attrFirst {
				r.FirstSeen = t
			} else {
				r.LastSeen = t
			}
		case attrOrigin:
			if v == "" || strings.ContainsAny(v, ";= \t") {
				return PinRecord{}, fmt.Errorf("pin %v: %s %q: want a word such as %s", p, name, v, OriginAdded)
			}
			r.Origin = Origin(v)
		case attrAfter:
			after, err := ParsePin(v)
			if err != nil {
				return PinRecord{}, fmt.Errorf("pin %v: %s: %w", p, name, err)
			}
			r.After = after
		default:
			r.extra = append(r.extra, a)
		}
	}
	return r, nil
}

// validFieldName reports whether s can name a field or an attribute: a
// lower-case letter, then lower-case letters, digits and '-', '_', '.'. A
// pin ("sha256//…=") is not a name, so a bare pin is reported as such
// instead of being kept as an unknown field.
func validFieldName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

func parseTime(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil || t.UTC().Format(timeLayout) != v {
		return time.Time{}, fmt.Errorf("time %q: want UTC with whole seconds, like 2026-01-02T15:04:05Z", v)
	}
	return t.UTC(), nil
}

// splitFields splits a line at runs of spaces and tabs. Unlike
// strings.Fields it leaves other (Unicode) white space inside fields, so
// what is split is exactly what String joins.
func splitFields(line string) []string {
	return strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' })
}

// canonicalHost returns "host:port" in one spelling per server, so that a
// host is found however it was typed: a lower-case DNS name without a
// trailing dot, or a normalized IP address (an IPv4-mapped IPv6 address as
// its IPv4 address, IPv6 in brackets), and a decimal
// port without leading zeros.
func canonicalHost(hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", fmt.Errorf("host %q: want HOST:PORT, an IPv6 address in brackets ([::1]:4242)", hostport)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 || strings.HasPrefix(port, "+") {
		return "", fmt.Errorf("host %q: port %q: want a number from 1 to 65535", hostport, port)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		// An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is the IPv4
		// address: the same host must find the same line.
		ip = ip.Unmap()
		if !validHostName(strings.ToLower(ip.Zone())) && ip.Zone() != "" {
			return "", fmt.Errorf("host %q: IPv6 zone %q: want letters, digits, '-', '_' and '.'", hostport, ip.Zone())
		}
		return net.JoinHostPort(ip.String(), strconv.FormatUint(n, 10)), nil
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if !validHostName(name) {
		return "", fmt.Errorf("host %q: %q is neither an IP address nor a host name (letters, digits, '-', '_' and '.')", hostport, host)
	}
	return net.JoinHostPort(name, strconv.FormatUint(n, 10)), nil
}

func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range []byte(label) {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	return true
}
