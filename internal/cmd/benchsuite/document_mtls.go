package main

import (
	"fmt"
	"io"
	"strings"
)

// writeMTLSTargets writes the mutual TLS targets of issue 14.
func (d *document) writeMTLSTargets(w io.Writer) {
	eng := func(e string) string { return "sc-server/" + e }
	var checks []check

	texts, v := d.perEngine([]string{"epoll", "goroutine"}, func(e string) (string, bool, bool) {
		s, ok1 := d.stats(mtlsHsP256, eng(e))
		ref, ok2 := d.stats(mtlsHsP256, "refserver")
		if !ok1 || !ok2 || ref.perCPU == 0 {
			return "", false, false
		}
		r := s.perCPU / ref.perCPU
		text := fmt.Sprintf("%s vs refserver %s per CPU-s (%.1f%%)", count(s.perCPU), count(ref.perCPU), 100*r)
		if t, ok := d.stats(hsP256, eng(e)); ok && t.perCPU > 0 {
			text += fmt.Sprintf("; our TLS-only full handshakes %s (mutual TLS at %.2f× of it)", count(t.perCPU), s.perCPU/t.perCPU)
		}
		return text, r >= 0.97 && s.errors == 0, true
	})
	checks = append(checks, check{"Full mutual TLS handshakes (TLS 1.3, P-256 server and client keys) per server CPU-second: ≥ 97% of a plain crypto/tls server's with RequireAnyClientCert and the same allow list check, in the same run", texts, v})

	texts, v = d.perEngine(d.config.engines, func(e string) (string, bool, bool) {
		s, ok := d.stats(mtlsHsResume, eng(e))
		if !ok {
			return "", false, false
		}
		text := fmt.Sprintf("%s per CPU-s, %.0f%% resumed", count(s.perCPU), 100*s.resumed)
		if ref, ok := d.stats(mtlsHsResume, "refserver"); ok {
			text += fmt.Sprintf("; refserver %s", count(ref.perCPU))
		}
		if full, ok := d.stats(mtlsHsP256, eng(e)); ok && full.perCPU > 0 {
			text += fmt.Sprintf("; %.2f× our full mutual TLS handshakes", s.perCPU/full.perCPU)
		}
		return text, s.errors == 0, true
	})
	checks = append(checks, check{"Resumed mutual TLS handshakes, TLS 1.3, per server CPU-second (reported, no target; the allow list is checked again on each)", texts, v})

	texts, v = d.perEngine([]string{"epoll"}, func(e string) (string, bool, bool) {
		s, ok := d.stats(mtlsIdle15k64, eng(e))
		if !ok {
			return "", false, false
		}
		kib := s.rssPerConn / 1024
		return fmt.Sprintf("%.1f KiB (%s held, %d errors)", kib, count(s.held), s.errors), kib <= 12 && s.held == 15000 && s.errors == 0, true
	})
	if s, ok := d.stats(idle15k64, eng("epoll")); ok {
		texts = append(texts, fmt.Sprintf("for reference, epoll without a client certificate: %.1f KiB", s.rssPerConn/1024))
	}
	if s, ok := d.stats(mtlsIdle15k64, eng("goroutine")); ok {
		texts = append(texts, fmt.Sprintf("goroutine: %.1f KiB", s.rssPerConn/1024))
	}
	if s, ok := d.stats(mtlsIdle15k64, "refserver"); ok {
		texts = append(texts, fmt.Sprintf("refserver: %.1f KiB", s.rssPerConn/1024))
	}
	checks = append(checks, check{"15,000 idle mutual TLS 1.3 connections held by the epoll engine at ≤ 12 KiB each after one 64-byte ECHO, the parsed client certificate kept ((RSS open − RSS before) / 15,000, 3 s after the last opened)", texts, v})

	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("## Issue 14 targets (mutual TLS)")
	p("")
	p("Medians of this run. `sc-client bench --identity` presents the bench identity, a P-256 key the suite makes for the run, on every connection; sc-server runs with `--client-auth require --client-allow` and the refserver with `--client-allow` (crypto/tls's `RequireAnyClientCert`, then the same allow list check, pinning's client verifier, in `VerifyConnection`), both given an allow list holding the identity's pin. The TLS-only figures are this run's lines without a client certificate, where they ran.")
	p("")
	p("| Target | Measured | Result |")
	p("|---|---|---|")
	for _, ch := range checks {
		p("| %s | %s | %s |", ch.target, strings.Join(ch.measured, "<br>"), ch.verdict)
	}
	p("")
}
