package main

import (
	"fmt"
	"io"
	"strings"
)

// writeDTLSTargets writes the DTLS targets of issue 16.
func (d *document) writeDTLSTargets(w io.Writer) {
	eng := func(e string) string { return "sc-server/" + e }
	var checks []check

	texts, v := d.perEngine(d.config.engines, func(e string) (string, bool, bool) {
		s, ok1 := d.stats(hsDTLS, eng(e))
		t, ok2 := d.stats(hsTLS12, eng(e))
		if !ok1 || !ok2 || t.perCPU == 0 {
			return "", false, false
		}
		r := s.perCPU / t.perCPU
		return fmt.Sprintf("DTLS %s vs TLS 1.2 %s per CPU-s (%.2f×)", count(s.perCPU), count(t.perCPU), r), r >= 0.7, true
	})
	checks = append(checks, check{"Full DTLS 1.2 handshakes (with the cookie exchange), P-256, per server CPU-second: ≥ 0.7× our TLS 1.2 full handshakes in the same run", texts, v})

	texts, v = d.perEngine(d.config.engines, func(e string) (string, bool, bool) {
		s, ok1 := d.stats(echoDTLS, eng(e))
		t, ok2 := d.stats(echoTLS12, eng(e))
		t13, ok3 := d.stats(echo50, eng(e))
		if !ok1 || !ok2 {
			return "", false, false
		}
		text := fmt.Sprintf("DTLS %s, TLS 1.2 %s", count(s.perCPU), count(t.perCPU))
		if ok3 {
			text += fmt.Sprintf(", TLS 1.3 %s", count(t13.perCPU))
		}
		return text + " per CPU-s", s.errors == 0, true
	})
	checks = append(checks, check{"ECHO round trips per server CPU-second at 50 sessions, beside TCP TLS (reported, no target)", texts, v})

	texts, v = d.perEngine(d.config.engines, func(e string) (string, bool, bool) {
		s, ok := d.stats(idleDTLS10, eng(e))
		if !ok {
			return "", false, false
		}
		kib := s.rssPerConn / 1024
		return fmt.Sprintf("%.1f KiB (%s held, %d errors)", kib, count(s.held), s.errors), kib <= 48 && s.held == 10000 && s.errors == 0, true
	})
	checks = append(checks, check{"10,000 concurrent DTLS sessions in one process, each answering an ECHO, at ≤ 48 KiB per idle session ((RSS open − RSS before) / 10,000, 5 s after the last opened)", texts, v})

	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("## Issue 16 targets (DTLS)")
	p("")
	p("Medians of this run. The DTLS server does not depend on `--engine` (its sessions are goroutines); each engine's line compares it with that engine's TLS in the same run.")
	p("")
	p("| Target | Measured | Result |")
	p("|---|---|---|")
	for _, ch := range checks {
		p("| %s | %s | %s |", ch.target, strings.Join(ch.measured, "<br>"), ch.verdict)
	}
	p("")
}
