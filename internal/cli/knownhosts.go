package cli

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spacecaptain/spacecaptain/pinning"
)

// ForgetCommand returns the command that removes host from the known hosts
// file at path, so that the next connection trusts its key on first use:
// "sc-cert pin forget HOST:PORT", with --known-hosts when path is not the
// default file.
func ForgetCommand(path, host string) string {
	return knownHostsCommand("sc-cert pin forget", path, host)
}

// AddCommand returns the command that trusts pin for host in the known
// hosts file at path: "sc-cert pin add HOST:PORT PIN", with --known-hosts
// when path is not the default file. Print it only for a pin to check out
// of band first.
func AddCommand(path, host string, pin pinning.Pin) string {
	return knownHostsCommand("sc-cert pin add", path, host, pin.String())
}

// UnrevokeCommand returns the command that removes the revoked mark of pin
// for host in the known hosts file at path: "sc-cert pin unrevoke
// HOST:PORT PIN". Print it only beside a warning: a revoked key may have
// been stolen.
func UnrevokeCommand(path, host string, pin pinning.Pin) string {
	return knownHostsCommand("sc-cert pin unrevoke", path, host, pin.String())
}

// knownHostsCommand renders an sc-cert command that works on the known
// hosts file at path, naming the file only when it is not the default one.
func knownHostsCommand(cmd, path string, args ...string) string {
	parts := []string{cmd}
	if def, err := pinning.DefaultStorePath(); path != "" && (err != nil || filepath.Clean(def) != filepath.Clean(path)) {
		parts = append(parts, "--known-hosts", ShellQuote(path))
	}
	for _, a := range args {
		parts = append(parts, ShellQuote(a))
	}
	return strings.Join(parts, " ")
}

// ShellQuote quotes s for a POSIX shell when it needs quoting, so that a
// printed command can be pasted as is.
func ShellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// KeyWarning returns the warning a terminal gets for a server whose key is
// not a trusted one, as loud as OpenSSH's: which host, the pin offered,
// the pins on file and where, and for a stored host the one command that
// forgets the old entry.
func KeyWarning(e *pinning.KeyError) string {
	var b strings.Builder
	bar := strings.Repeat("@", 62)
	if e.Path == "" {
		fmt.Fprintf(&b, "%s\n@  WARNING: THE SERVER'S KEY IS NOT ONE OF THE PINNED KEYS  @\n%s\n", bar, bar)
	} else {
		fmt.Fprintf(&b, "%s\n@  WARNING: THE KEY OF %s HAS CHANGED\n%s\n", bar, e.Host, bar)
	}
	b.WriteString("Someone could be intercepting the connection (a machine-in-the-middle\n")
	b.WriteString("attack), or the server's key was replaced. The connection was refused\n")
	b.WriteString("and nothing was recorded.\n\n")
	fmt.Fprintf(&b, "The server at %s presented a key with the pin\n    %v\n", e.Host, e.Got)
	if e.Path != "" {
		fmt.Fprintf(&b, "The known hosts file %s, line %d, trusts\n", e.Path, e.Line)
	} else {
		b.WriteString("The pins given trust\n")
	}
	for _, w := range e.Want {
		role := "backup"
		if w.Current {
			role = "current"
		}
		fmt.Fprintf(&b, "    %v (%s)\n", w.Pin, role)
	}
	if e.Path != "" {
		fmt.Fprintf(&b, "\nIf you know that the key was replaced on purpose (ask the operator for\nthe new pin and compare it with the one above), forget the old key with\n    %s\nand connect again.\n", ForgetCommand(e.Path, e.Host))
	} else {
		b.WriteString("\nIf the key was replaced on purpose, ask the operator for the new pin.\n")
	}
	return b.String()
}

// RevokedWarning returns the warning a terminal gets for a server that
// presented a revoked key: which host and key, who revoked it and when this
// client learned it, and where the mark is.
func RevokedWarning(e *pinning.RevokedKeyError) string {
	var b strings.Builder
	bar := strings.Repeat("@", 62)
	fmt.Fprintf(&b, "%s\n@  WARNING: %s PRESENTED A REVOKED KEY\n%s\n", bar, e.Host, bar)
	fmt.Fprintf(&b, "The server at %s presented a key with the pin\n    %v\n", e.Host, e.Pin)
	who := e.RevokedBy()
	switch {
	case e.Path == "":
		who = "in this client's configuration (--revoked-pin)"
	case e.Origin == pinning.OriginAdded:
		who = "by a person on this machine (sc-cert pin revoke)"
	}
	fmt.Fprintf(&b, "That key was revoked %s", who)
	if !e.Since.IsZero() {
		fmt.Fprintf(&b, ";\nthis client learned of the revocation at %s", e.Since.UTC().Format("2006-01-02T15:04:05Z07:00"))
	}
	b.WriteString(".\n")
	b.WriteString("A revoked key may have been stolen: whoever answered could be\n")
	b.WriteString("impersonating the server. The connection was refused and nothing was\n")
	b.WriteString("recorded.\n")
	if e.Path != "" {
		fmt.Fprintf(&b, "\nThe mark is in the known hosts file %s, line %d. Only if the\nrevocation was a mistake, remove it with\n    %s\n", e.Path, e.Line, UnrevokeCommand(e.Path, e.Host, e.Pin))
	}
	return b.String()
}

// TrustHints returns what a person can do about an error of package
// pinning, as commands: forget a host whose key changed or whose line is
// broken, add a key after checking it, renew an expired certificate. It
// returns nil for any other error.
func TrustHints(err error) []string {
	var (
		ke *pinning.KeyError
		ue *pinning.UnknownHostError
		le *pinning.LineError
		ve *pinning.ValidityError
	)
	switch {
	case errors.As(err, &ke) && ke.Path != "":
		return []string{"if the key was replaced on purpose (check the new pin with the operator), run: " + ForgetCommand(ke.Path, ke.Host)}
	case errors.As(err, &ue) && ue.Path != "":
		return []string{"check that pin with the operator, then run: " + AddCommand(ue.Path, ue.Host, ue.Got)}
	case errors.As(err, &le) && le.Host != "":
		return []string{"fix the line, or start over with the host: " + ForgetCommand(le.Path, le.Host)}
	case errors.As(err, &ve) && ve.Now.After(ve.NotAfter):
		return []string{"the server's operator renews it on the same key, which every pin keeps trusting: sc-cert rotate"}
	}
	return nil
}
