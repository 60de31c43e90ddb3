package servercmd

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
)

// tlsVersionValue is a flag for a TLS version written "1.2" or "1.3".
type tlsVersionValue struct{ v *uint16 }

func (f tlsVersionValue) String() string {
	switch *f.v {
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	}
	return ""
}

func (f tlsVersionValue) Set(s string) error {
	switch strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "tls") {
	case "1.2":
		*f.v = tls.VersionTLS12
	case "1.3":
		*f.v = tls.VersionTLS13
	default:
		return fmt.Errorf("%q is not a TLS version this server accepts as a minimum: want 1.2 or 1.3", s)
	}
	return nil
}

func (tlsVersionValue) Type() string { return "version" }

// levelValue is a flag for a slog level: debug, info, warn or error.
type levelValue struct{ l *slog.Level }

func (f levelValue) String() string { return strings.ToLower(f.l.String()) }

func (f levelValue) Set(s string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("%q: want debug, info, warn or error", s)
	}
	*f.l = l
	return nil
}

func (levelValue) Type() string { return "level" }

// newLogger returns the server's logger on w: text for people, JSON for
// machines, with stable snake_case keys either way.
func newLogger(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// prefixesValue is a flag for address prefixes, comma-separated and
// repeatable: CIDR (10.0.0.0/8, fd00::/8) or a bare address (one host:
// /32 or /128). An empty value adds none.
type prefixesValue struct{ p *[]netip.Prefix }

func (f prefixesValue) String() string {
	s := make([]string, len(*f.p))
	for i, p := range *f.p {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (f prefixesValue) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if strings.Contains(part, "/") {
			p, err := netip.ParsePrefix(part)
			if err != nil {
				return fmt.Errorf("%q is not an address or CIDR prefix, e.g. 10.0.0.5 or 10.0.0.0/24", part)
			}
			*f.p = append(*f.p, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return fmt.Errorf("%q is not an address or CIDR prefix, e.g. 10.0.0.5 or 10.0.0.0/24", part)
		}
		a = a.Unmap().WithZone("")
		*f.p = append(*f.p, netip.PrefixFrom(a, a.BitLen()))
	}
	return nil
}

func (prefixesValue) Type() string { return "CIDRs" }
