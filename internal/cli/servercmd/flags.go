package servercmd

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
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
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
