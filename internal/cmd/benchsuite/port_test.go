//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A DTLS scenario's server that exits because its UDP port was taken
// between freeAddr and its start (as the epoll server of a smoke run did,
// twice in one run) is started again on another port, and the run goes
// on; the bench command of the failed try ends with the server, not
// after its --wait.
func TestRunOneRetriesAPortTaken(t *testing.T) {
	dir := t.TempDir()
	count, args := filepath.Join(dir, "count"), filepath.Join(dir, "args")
	t.Setenv("FAKE_COUNT", count)
	t.Setenv("FAKE_ARGS", args)
	write := func(name, script string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The first server finds its UDP port taken, as sc-server says it.
	write("sc-server", `n=$(cat "$FAKE_COUNT" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$FAKE_COUNT"
echo "$@" >> "$FAKE_ARGS"
if [ $n = 1 ]; then
	echo 'sc-server: error: listening on UDP 127.0.0.1:1 for DTLS: listen udp 127.0.0.1:1: bind: address already in use' >&2
	exit 1
fi
exec sleep 60
`)
	// The bench waits for the first server forever, and reports at once
	// against the second. It tells which server is its own by the address
	// it is given, waiting until that server has written its line: under
	// load a bench may start before its server script has run at all.
	write("bench", `addr=""
while [ $# -gt 0 ]; do [ "$1" = --server ] && addr=$2; shift; done
until grep -q -- "--listen $addr " "$FAKE_ARGS" 2>/dev/null; do sleep 0.01; done
if [ "$(grep -n -- "--listen $addr " "$FAKE_ARGS" | cut -d: -f1)" = 1 ]; then exec sleep 60; fi
echo '{}'
`)
	c := &config{binDir: dir, benchCmd: []string{filepath.Join(dir, "bench")}, resultDir: t.TempDir(), duration: time.Second}
	sc := scenario{ID: "dtls-fake", DTLS: true, Cert: certNone, Timeout: time.Minute}
	cmds := &commands{server: map[string]string{}}
	start := time.Now()
	res := c.runOne(t.Context(), sc, server{Name: "sc-server/epoll", engine: "epoll"}, 1, cmds)
	if res.Err != "" || res.Report == nil {
		t.Fatalf("got %q, want a report from the second server", res.Err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the run took %v: the failed try waited for its bench command", took)
	}
	b, err := os.ReadFile(args)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 2 {
		t.Errorf("the server started %d times, want 2:\n%s", len(lines), b)
	}
}
