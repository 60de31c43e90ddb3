package pinning

import (
	"crypto/tls"
	"fmt"
)

// Mode says how a client decides to trust a server. The zero value is
// [ModeCA], which verifies like crypto/tls does by default.
type Mode int

const (
	// ModeCA verifies the server's chain against a set of roots (the system
	// roots when none are given) and the server name, with crypto/tls's own
	// verification. An IP address is checked against the IP SANs.
	ModeCA Mode = iota

	// ModePin trusts a server whose leaf certificate's key is in a [Set].
	// The chain is not verified: the pin is the trust anchor, as with curl's
	// --pinnedpubkey.
	ModePin

	// ModeCAPin requires both: a chain verified as in [ModeCA], and a key
	// from the [Set] anywhere in a verified chain (the leaf, an intermediate
	// or the root), as HPKP (RFC 7469) matches pins.
	ModeCAPin

	// ModeTOFU trusts on first use, then strictly, like OpenSSH's
	// known_hosts: the first key a host presents is recorded in a [Store]
	// after the handshake completes, and a different key later is a
	// [*KeyError].
	ModeTOFU

	// ModeInsecure trusts any server. Every connection is reported to the
	// warning callback. It exists for tests and comparisons, never as a
	// fallback.
	ModeInsecure
)

var modeNames = [...]string{
	ModeCA:       "ca",
	ModePin:      "pin",
	ModeCAPin:    "ca+pin",
	ModeTOFU:     "tofu",
	ModeInsecure: "insecure",
}

// String returns the mode's name as [ParseMode] accepts it: "ca", "pin",
// "ca+pin", "tofu" or "insecure".
func (m Mode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses a mode name as [Mode.String] writes it.
func ParseMode(s string) (Mode, error) {
	for m, name := range modeNames {
		if s == name {
			return Mode(m), nil
		}
	}
	return 0, fmt.Errorf("unknown trust mode %q: want ca, pin, ca+pin, tofu or insecure", s)
}

// valid reports whether m is one of the defined modes.
func (m Mode) valid() bool {
	return m >= 0 && int(m) < len(modeNames)
}

// skipsChainVerification is the one predicate that decides whether
// crypto/tls's own chain verification is switched off. It is off exactly in
// the modes whose trust anchor is not a CA: there our VerifyConnection is the
// whole check.
func (m Mode) skipsChainVerification() bool {
	switch m {
	case ModePin, ModeTOFU, ModeInsecure:
		return true
	default:
		return false
	}
}

// clientConfig returns a clone of base (nil means an empty config) with the
// trust decision of mode wired in. It is the only place in the project that
// sets InsecureSkipVerify, and it sets it only from
// [Mode.skipsChainVerification] and only together with a VerifyConnection,
// which crypto/tls calls on full handshakes and on resumed sessions alike
// (VerifyPeerCertificate is not called on resumption; see crypto/tls
// handshake_client.go and Go issue 31641).
func clientConfig(base *tls.Config, mode Mode, verify func(tls.ConnectionState) error) *tls.Config {
	if verify == nil {
		panic("pinning: clientConfig without a VerifyConnection")
	}
	var cfg *tls.Config
	if base == nil {
		cfg = &tls.Config{}
	} else {
		cfg = base.Clone()
	}
	cfg.InsecureSkipVerify = mode.skipsChainVerification()
	cfg.VerifyConnection = verify
	return cfg
}
