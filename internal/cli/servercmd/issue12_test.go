package servercmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"github.com/spacecaptain/spacecaptain/pki"
)

// --check and a start judge the files with one function, so they agree:
// a CA key others may read, or one that does not parse, fails both (issue
// 12: the first passed --check, the second passed both silently).
func TestCheckAndStartAgree(t *testing.T) {
	tests := []struct {
		name string
		edit func(t *testing.T, l pki.Layout)
		says string
	}{
		{"CA key readable by others", func(t *testing.T, l pki.Layout) {
			if err := os.Chmod(l.CAKey, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "chmod 600"},
		{"garbage CA key", func(t *testing.T, l pki.Layout) {
			if err := os.WriteFile(l.CAKey, []byte("garbage\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "ca.key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustInit(t)
			tt.edit(t, l)
			code, out, errOut := runCmd(t, Env{}, append(layoutArgs(l), "--check")...)
			if code != 1 || !strings.Contains(errOut, tt.says) {
				t.Errorf("--check: exit %d, want 1 saying %q\n%s%s", code, tt.says, out, errOut)
			}
			code, _, errOut = runCmd(t, Env{}, append(layoutArgs(l), "--listen", "127.0.0.1:0")...)
			if code != 1 || !strings.Contains(errOut, tt.says) {
				t.Errorf("start: exit %d, want 1 saying %q\n%s", code, tt.says, errOut)
			}
			// Without renewal the CA key plays no part, in either.
			if code, _, errOut := runCmd(t, Env{}, append(layoutArgs(l), "--check", "--auto-renew=false")...); code != 0 {
				t.Errorf("--check --auto-renew=false: exit %d\n%s", code, errOut)
			}
		})
	}
}

// --check writes nothing: an interrupted rotation is reported, with the
// command that completes it, and left for the start (issue 12: --check
// silently finished it).
func TestCheckWritesNothing(t *testing.T) {
	l := mustInit(t)
	journal := filepath.Join(l.Dir, ".sc-cert.journal")
	if err := os.WriteFile(journal, []byte(`{"version":1,"state":"prepare","files":[]}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := dirNames(t, l.Dir)
	code, out, errOut := runCmd(t, Env{}, append(layoutArgs(l), "--check")...)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	want := "an interrupted rotation is pending in " + l.Dir + "; it will be completed at start (or run sc-cert rotate --recover --cert " + l.ServerCert + " --key " + l.ServerKey + ")"
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	if after := dirNames(t, l.Dir); after != before {
		t.Errorf("--check changed the directory: %s, was %s", after, before)
	}
	// A start completes it.
	r := startServer(t, Env{}, layoutArgs(l)...)
	r.stop()
	if _, err := os.Stat(journal); err == nil {
		t.Error("the start left the journal")
	}
}

// --check --json gives the same facts to scripts.
func TestCheckJSON(t *testing.T) {
	l := mustInit(t)
	code, out, errOut := runCmd(t, Env{}, append(layoutArgs(l), "--check", "--json")...)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var got struct {
		OK     bool              `json:"ok"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || !got.OK || got.Checks["pin"] == "" || got.Checks["next_key"] == "" {
		t.Errorf("got %+v, %v from:\n%s", got, err, out)
	}
	if code, _, errOut := runCmd(t, Env{}, append(layoutArgs(l), "--json")...); code != 2 || !strings.Contains(errOut, "--json is for --check") {
		t.Errorf("--json without --check: exit %d\n%s", code, errOut)
	}
}

// A port out of range is a usage error, not "is the port in use?" (issue
// 12).
func TestListenPortOutOfRange(t *testing.T) {
	code, _, errOut := runCmd(t, Env{}, "--listen", "127.0.0.1:99999")
	if code != 2 || !strings.Contains(errOut, "port 99999: want 0 to 65535") || strings.Contains(errOut, "in use") {
		t.Errorf("exit %d, want 2 naming the range\n%s", code, errOut)
	}
}

// --cert alone serves the key beside it with the same name, not
// certs/server.key.
func TestCertAloneUsesSiblingKey(t *testing.T) {
	l := mustInit(t)
	game := filepath.Join(t.TempDir(), "game.crt")
	copyFile(t, l.ServerCert, game)
	copyFile(t, l.ServerKey, strings.TrimSuffix(game, ".crt")+".key")
	if err := os.Chmod(strings.TrimSuffix(game, ".crt")+".key", 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, Env{}, "--cert", game, "--check", "--auto-renew=false")
	if code != 0 || !strings.Contains(out, "game.key") {
		t.Errorf("exit %d, want 0 with game.key\n%s%s", code, out, errOut)
	}
}

// A flood of SIGHUPs makes a bounded number of log lines: reloads are
// merged while one runs, and "reload requested" is logged at most once a
// second (issue 12: 4,636 signals wrote 4,631 INFO lines).
func TestSIGHUPFloodIsRateLimited(t *testing.T) {
	l := mustInit(t)
	r := startServer(t, Env{}, layoutArgs(l)...)
	start := time.Now()
	const signals = 500
	for range signals {
		r.reload <- os.Interrupt
	}
	elapsed := time.Since(start)
	r.requestReload()
	r.stop()
	log := r.stderr.String()
	lines := strings.Count(log, "\n")
	requested := strings.Count(log, `msg="reload requested"`)
	limit := 2 + int(elapsed/time.Second) + 1
	if requested > limit || requested == 0 {
		t.Errorf("%d signals in %v logged %d \"reload requested\" lines, want 1 to %d", signals, elapsed, requested, limit)
	}
	if lines > 40 {
		t.Errorf("%d signals wrote %d log lines:\n%s", signals, lines, log)
	}
}

// SIGTERM stops the server within --shutdown-timeout even while a reload
// is stuck (here waiting for another process's rotation lock, which it
// would for 30 s): the signal loop never waits for a reload (issue 12: a
// reload stuck on a FIFO kept SIGTERM from working).
func TestStopWhileReloadIsStuck(t *testing.T) {
	l := mustInit(t)
	r := startServer(t, Env{}, append(layoutArgs(l), "--shutdown-timeout", "1s")...)
	lock := flock.New(filepath.Join(l.Dir, ".sc-cert.lock"))
	if ok, err := lock.TryLock(); err != nil || !ok {
		t.Fatalf("taking the lock: %v %v", ok, err)
	}
	defer lock.Unlock()
	if err := os.WriteFile(filepath.Join(l.Dir, ".sc-cert.journal"), []byte(`{"version":1,"state":"prepare","files":[]}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.reload <- os.Interrupt // the reload now waits for the lock
	start := time.Now()
	code := r.stop()
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("stopping took %v with --shutdown-timeout 1s", took)
	}
	if code != 0 {
		t.Errorf("exit %d, want 0\n%s", code, r.stderr)
	}
}

// Swapped --cert and --key are diagnosed as swapped, as sc-cert verify
// does, not as a certificate file others may read with "treat the key as
// leaked" (issue 12).
func TestSwappedCertAndKey(t *testing.T) {
	l := mustInit(t)
	for _, extra := range [][]string{{"--check"}, {"--listen", "127.0.0.1:0"}} {
		code, _, errOut := runCmd(t, Env{}, append([]string{"--cert", l.ServerKey, "--key", l.ServerCert}, extra...)...)
		if code != 1 || !strings.Contains(errOut, "swapped") || strings.Contains(errOut, "leaked") || strings.Contains(errOut, "chmod") {
			t.Errorf("%v: exit %d, want 1 with the swapped-paths diagnosis:\n%s", extra, code, errOut)
		}
	}
}

// The configuration file names the files the server trusts, so one that
// another user may write is refused with the fix, like a key (issue 12).
func TestConfigFileOthersMayWriteRefused(t *testing.T) {
	l := mustInit(t)
	conf := filepath.Join(t.TempDir(), "sc-server.toml")
	if err := os.WriteFile(conf, []byte("auto-renew = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd(t, Env{}, append(layoutArgs(l), "--config", conf, "--check")...); code != 0 {
		t.Fatalf("a 0644 root-owned file: exit %d\n%s", code, errOut)
	}
	if err := os.Chmod(conf, 0o666); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCmd(t, Env{}, append(layoutArgs(l), "--config", conf, "--check")...)
	if code != 1 || !strings.Contains(errOut, "chmod go-w") {
		t.Errorf("a 0666 file: exit %d, want 1 with chmod go-w\n%s", code, errOut)
	}
}
