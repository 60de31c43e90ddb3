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

// writeDTLSNotes explains where the DTLS server's CPU and memory go, as
// measured with profiles (the numbers in the text are from those
// measurements, not from this run).
func (d *document) writeDTLSNotes(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("## Where the DTLS server's CPU and memory go")
	p("")
	p("The DTLS server is pion/dtls v4.0.2 (`internal/dtls`), one goroutine of ours per session plus pion's, beside the TCP server's crypto/tls. Measured with `go test -run TestHalfOpenCost -v ./internal/dtls` and with CPU, heap and goroutine profiles of an in-process server under `sc-client bench --udp` from another process (revision of issue 16):")
	p("")
	p("- **Memory per idle session**: about 49 KiB of heap and 24 KiB of goroutine stacks (2,000 sessions). pion keeps **four goroutines per session** for its life — ours (a read loop) and pion's handshake state machine, handshake reader and connection-ID path reader (connection IDs are on for NAT rebinding) — and **three read buffers** of the largest record answered (4,168 bytes, a 4,864-byte allocation each): ours, and one held by each of pion's two reading goroutines while they wait. Sizing pion's buffers to that record instead of its 8 KiB default saved about 10 KiB a session; the gate catches larger datagrams and answers them with an ERROR itself. The rest is pion's connection state: its per-address packet connection and buffer in the listener, the handshake cache kept for retransmissions, cipher state, deadlines and contexts.")
	p("- **What would reach 48 KiB**: pion's `DetachedConn` (the caller moves the datagrams) would drop the listener's per-address connection, the path reader goroutine and its buffer, and let the server drive sessions from a worker pool instead of a goroutine and a buffer each: about 25 KiB less. Not done yet: it moves connection-ID routing and retransmission timing into the server.")
	p("- **CPU per full handshake**: about 0.9–1.1 ms of server CPU against crypto/tls's 0.4 ms for TLS 1.2 with the same certificate and group. The cryptography is the same (X25519, an ECDSA P-256 signature; pion also recomputes its X25519 public key once more), about a quarter of the total; the Go runtime takes over half (allocation, about 80 KB a handshake, garbage collection, stack growth of the four new goroutines, channel and timer traffic between them), and the cookie exchange adds a round trip and two datagrams. Datagram counters showed no retransmission (5 datagrams in, 5 out per handshake with its ECHO and close). Adaptive goroutine stack sizes and `GOGC=400` did not move the ratio beyond the run-to-run noise.")
	p("- **ECHO**: every request crosses three goroutines in pion before the session's (the listener's reader, the path reader, the record reader) and one back out: about 40 µs of server CPU per round trip against 15–20 µs over TLS.")
	p("")
}
