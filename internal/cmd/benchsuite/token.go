package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/bench/benchdoc"
)

// The token run (issue 17): full TLS 1.3 handshakes, P-256, against
// sc-server serving one key from a file and the same key from a PKCS#11
// token (SoftHSM2), interleaved run by run, medians compared per server
// CPU-second. scripts/bench.sh --token makes the token, imports the P-256
// layout's server key into it and names it in DIR/server.uri.

// tokenTarget is the least ratio of token to file handshakes per server
// CPU-second that counts as met: the PKCS#11 call path's overhead, with
// SoftHSM2 signing in software.
const tokenTarget = 0.8

// tokenSuffix marks the server that serves the key from the token.
const tokenSuffix = "+softhsm2"

// tokenScenario is the token run's one scenario, timed by d.
func tokenScenario(d time.Duration) scenario {
	return scenario{ID: "hs-full-p256-tls13-token", Title: "full handshakes, TLS 1.3, P-256 key on disk and in SoftHSM2", Cert: certP256,
		Args: []string{"handshake", "--tls", "1.3", "--conns", "8", "--duration", d.String()}}
}

// tokenServers pairs each engine's server with the same server reading
// its key from the token.
func (c *config) tokenServers() []server {
	var list []server
	for _, e := range c.engines {
		list = append(list,
			server{Name: "sc-server/" + e, engine: e},
			server{Name: "sc-server/" + e + tokenSuffix, engine: e, key: filepath.Join(c.tokenDir, "server.uri")})
	}
	return list
}

// writeToken checks the token run and writes its section of c.out (the
// "token" block), leaving the rest of the document alone.
func writeToken(c *config, sc scenario, results []result, load0, load1 string, took time.Duration) error {
	d := &document{config: c, scenarios: []scenario{sc}, results: results}
	var b strings.Builder
	fmt.Fprintf(&b, "## Keys in a PKCS#11 token\n\n")
	fmt.Fprintf(&b, "Full TLS 1.3 handshakes (default groups, the hybrid X25519MLKEM768) with a P-256 server key, 8 connections, each run %s, medians of %d interleaved runs: the same key read from `server.key` and kept in a SoftHSM2 token (imported with `softhsm2-util --import`, served through `server.uri`). The ratio is the cost of the PKCS#11 call path (issue 17 asks for at least %.1f×); SoftHSM2 signs in software (with OpenSSL), in the server process, so its CPU time counts.\n\n", c.duration, c.runs, tokenTarget)
	fmt.Fprintf(&b, "| server | key | handshakes/s | per server CPU-second | p50 | p99 | token ÷ file |\n|---|---|---|---|---|---|---|\n")
	var bad []string
	for _, e := range c.engines {
		file, okF := d.stats(sc.ID, "sc-server/"+e)
		tok, okT := d.stats(sc.ID, "sc-server/"+e+tokenSuffix)
		if !okF || !okT {
			bad = append(bad, fmt.Sprintf("%s: no reports (file: %q, token: %q)", e, file.failures, tok.failures))
			continue
		}
		for _, s := range []stats{file, tok} {
			if s.errors > 0 || len(s.failures) > 0 {
				bad = append(bad, fmt.Sprintf("%s: %d errors, failures %q", e, s.errors, s.failures))
			}
		}
		ratio := tok.perCPU / file.perCPU
		verdict := "met"
		if ratio < tokenTarget {
			verdict = "**not met**"
		}
		fmt.Fprintf(&b, "| sc-server (%s) | file | %.0f | %.0f | %.2f ms | %.2f ms | |\n", e, file.opsPerSec, file.perCPU, file.p50/1000, file.p99/1000)
		fmt.Fprintf(&b, "| sc-server (%s) | SoftHSM2 | %.0f | %.0f | %.2f ms | %.2f ms | %.2f× (%s) |\n", e, tok.opsPerSec, tok.perCPU, tok.p50/1000, tok.p99/1000, ratio, verdict)
	}
	fmt.Fprintf(&b, "\nMeasured at %s, %s, in %s; load average %s before and %s after", orUnknown(c.revision), orUnknown(c.goVersion), took.Round(time.Second), load0, load1)
	if c.note != "" {
		fmt.Fprintf(&b, " (%s)", c.note)
	}
	fmt.Fprintf(&b, ". Rerun with `scripts/bench.sh --token` (`--runs`, `--duration` and `--engines` as for the full run).\n\n")
	b.WriteString(`**Reading it for a hardware token.** Each full handshake is one signature by the token, so the
handshake rate cannot exceed the token's signing rate; a resumed handshake needs none. Run the same
measurement with the token's module (its key URI in ` + "`server.uri`" + `): if handshakes/s stays flat as
` + "`--conns`" + ` grows while the server's CPU is far from busy (its handshakes per CPU-second then rise
above the file key's, as the signing is done outside the server), the token's signing rate is the cap,
and handshakes/s is that rate.
`)
	if len(bad) > 0 {
		return fmt.Errorf("token run failed:\n  %s", strings.Join(bad, "\n  "))
	}
	if c.out == "" {
		fmt.Print(b.String())
		return nil
	}
	doc, err := os.ReadFile(c.out)
	if err != nil {
		return err
	}
	out, err := benchdoc.SetBlock(doc, benchdoc.Block{Name: "token", Writer: "scripts/bench.sh --token", Body: b.String()})
	if err != nil {
		return err
	}
	if bytes.Equal(out, doc) {
		return nil
	}
	return os.WriteFile(c.out, out, 0o644)
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown revision"
	}
	return s
}
