package proto

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// pinPrefix starts every pin in a KEYS reply: the curl --pinnedpubkey and
// HPKP pin-sha256 form, "sha256//" then standard base64 of SHA-256 over the
// DER SubjectPublicKeyInfo. Package pinning owns pins; this package only
// checks their shape, so that it need not import pinning.
const pinPrefix = "sha256//"

// pinEncoding is strict so that a pin has exactly one spelling and a parsed
// reply renders back to the same bytes.
var pinEncoding = base64.StdEncoding.Strict()

// KeySet is the content of a KEYS reply: the pin of the key the server
// uses now, the pins of keys it will move to, and the pins its operator has
// revoked. Pins are "sha256//" and the standard base64 of a SHA-256 digest.
type KeySet struct {
	// Current is the pin of the key the server is using.
	Current string
	// Next are the pins of the keys it will roll over to.
	Next []string
	// Revoked are the pins of keys its operator has revoked: clients that
	// trust one of them should stop (see TRUST.md, "Revocation").
	Revoked []string
}

// AppendKeys appends the body of a KEYS reply to dst: the line
// "current PIN", then one "next PIN" line for each of next, each line ending
// in "\n". Pins are written as given; [ParseKeys] is what checks them.
func AppendKeys(dst []byte, current string, next []string) []byte {
	return AppendKeySet(dst, KeySet{Current: current, Next: next})
}

// AppendKeySet appends the body of a KEYS reply to dst: the line
// "current PIN", then a "next PIN" line for each of ks.Next and a
// "revoked PIN" line for each of ks.Revoked, each line ending in "\n". Pins
// are written as given; [ParseKeySet] is what checks them.
func AppendKeySet(dst []byte, ks KeySet) []byte {
	dst = append(dst, "current "...)
	dst = append(dst, ks.Current...)
	dst = append(dst, '\n')
	for _, p := range ks.Next {
		dst = append(dst, "next "...)
		dst = append(dst, p...)
		dst = append(dst, '\n')
	}
	for _, p := range ks.Revoked {
		dst = append(dst, "revoked "...)
		dst = append(dst, p...)
		dst = append(dst, '\n')
	}
	return dst
}

// AppendKeysClient appends the line of a KEYS reply that tells the client
// who the server took it for: "client PIN", or "client PIN NAME", ending in
// "\n". The caller keeps NAME free of white space and control characters
// (package pinning's ValidClientName): a newline in it would inject a
// line.
func AppendKeysClient(dst []byte, pin, name string) []byte {
	dst = append(dst, "client "...)
	dst = append(dst, pin...)
	if name != "" {
		dst = append(dst, ' ')
		dst = append(dst, name...)
	}
	return append(dst, '\n')
}

// KeysClient returns the rest of the "client" line of a KEYS reply body
// ("PIN" or "PIN NAME"), or "" when it has none.
func KeysClient(body []byte) string {
	for line := range strings.SplitSeq(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, "client "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// ParseKeys parses the body of a KEYS reply as [ParseKeySet] does and
// returns its current and next pins.
func ParseKeys(body []byte) (current string, next []string, err error) {
	ks, err := ParseKeySet(body)
	return ks.Current, ks.Next, err
}

// ParseKeySet parses the body of a KEYS reply: UTF-8 lines, the first
// "current PIN" and then zero or more "next PIN" and "revoked PIN" lines in
// any order, where each PIN is "sha256//" and the standard base64 of a
// SHA-256 digest. The last line may lack its "\n". Lines with another
// first word are skipped, so that a later server can add lines an older
// client ignores.
//
// Errors are [*ProtocolError] values of kind [KindBadKeys].
func ParseKeySet(body []byte) (KeySet, error) {
	var ks KeySet
	if len(body) == 0 {
		return KeySet{}, errorf(KindBadKeys, "KEYS reply is empty: want a %q line", "current "+pinPrefix+"…")
	}
	rest := body
	for lineNo := 1; len(rest) > 0; lineNo++ {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		word, pin, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			return KeySet{}, errorf(KindBadKeys, "KEYS reply line %d: got %q, want a word, a space and a pin", lineNo, truncate(line))
		}
		switch string(word) {
		case "current":
			if lineNo != 1 {
				return KeySet{}, errorf(KindBadKeys, "KEYS reply line %d: %q must be the first line and appear once", lineNo, "current")
			}
		case "next", "revoked":
			if lineNo == 1 {
				return KeySet{}, errorf(KindBadKeys, "KEYS reply line 1: got %q, want the %q pin first", truncate(word), "current")
			}
		default:
			if lineNo == 1 {
				return KeySet{}, errorf(KindBadKeys, "KEYS reply line 1: got %q, want the %q pin first", truncate(word), "current")
			}
			continue
		}
		if err := checkPin(pin); err != nil {
			return KeySet{}, errorf(KindBadKeys, "KEYS reply line %d: %w", lineNo, err)
		}
		switch string(word) {
		case "current":
			ks.Current = string(pin)
		case "next":
			ks.Next = append(ks.Next, string(pin))
		default:
			ks.Revoked = append(ks.Revoked, string(pin))
		}
	}
	return ks, nil
}

// checkPin checks that pin is "sha256//" and the canonical standard base64
// of a 32-byte digest.
func checkPin(pin []byte) error {
	b64, ok := bytes.CutPrefix(pin, []byte(pinPrefix))
	if !ok {
		return fmt.Errorf("pin %q does not start with %q", truncate(pin), pinPrefix)
	}
	var digest [sha256.Size + 2]byte
	if pinEncoding.EncodedLen(sha256.Size) != len(b64) {
		return fmt.Errorf("pin %q: got %d base64 characters, want %d for a SHA-256 digest", truncate(pin), len(b64), pinEncoding.EncodedLen(sha256.Size))
	}
	if _, err := pinEncoding.Decode(digest[:], b64); err != nil {
		return fmt.Errorf("pin %q is not standard base64: %w", truncate(pin), err)
	}
	return nil
}

// truncate keeps error messages about hostile input short.
func truncate(b []byte) string {
	const limit = 80
	if len(b) > limit {
		return strings.ToValidUTF8(string(b[:limit]), "?") + "…"
	}
	return string(b)
}
