package clientcmd

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// Cross-flag mistakes and bad values are usage errors (exit 2) that name
// the flags, found before anything is dialed.
func TestFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"pin with tofu", []string{"echo", "x", "--pin", "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "--tofu", "auto"}, "--tofu can't be used with --pin"},
		{"ca with known hosts", []string{"echo", "x", "--ca", "ca.crt", "--known-hosts", "kh"}, "--known-hosts can't be used with --ca"},
		{"insecure with pin", []string{"echo", "x", "--insecure", "--pin", "sha256//x"}, "--pin can't be used with --insecure"},
		{"insecure with ca", []string{"echo", "x", "--insecure", "--ca", "ca.crt"}, "--ca can't be used with --insecure"},
		{"plaintext with ca", []string{"echo", "x", "--plaintext", "--ca", "ca.crt"}, "--ca can't be used with --plaintext"},
		{"plaintext with tofu", []string{"time", "--plaintext", "--tofu", "off"}, "--tofu can't be used with --plaintext"},
		{"bad tofu", []string{"time", "--tofu", "sometimes"}, "--tofu"},
		{"bad server", []string{"time", "--server", "host:port:x"}, "--server"},
		{"server port zero", []string{"time", "--server", "127.0.0.1:0"}, "--server"},
		{"timeout zero", []string{"time", "--timeout", "0s"}, "--timeout"},
		{"echo without text", []string{"echo"}, "TEXT"},
		{"time with argument", []string{"time", "now"}, "no arguments"},
		{"count without random", []string{"chat", "--count", "3"}, "--count is for --random"},
		{"type with random", []string{"chat", "--random", "--type", "time"}, "--type can't be used with --random"},
		{"bad type", []string{"chat", "--type", "keys"}, "--type"},
		{"bad pin", []string{"time", "--pin", "sha256//tooshort"}, "--pin"},
		{"unknown flag", []string{"time", "--verbose"}, "--verbose"},
		{"unknown command", []string{"ping"}, "ping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", false, tt.args...)
			if r.code != cli.ExitUsage {
				t.Errorf("exit code: got %d, want %d\nstderr: %s", r.code, cli.ExitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr does not say %q:\n%s", tt.want, r.stderr)
			}
		})
	}
}

func TestNormalizeServer(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.1:4242", "127.0.0.1:4242"},
		{"localhost", "localhost:4242"},
		{"game.example", "game.example:4242"},
		{"::1", "[::1]:4242"},
		{"[::1]", "[::1]:4242"},
		{"[::1]:99", "[::1]:99"},
	}
	for _, tt := range tests {
		got, err := normalizeServer(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("normalizeServer(%q): got %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", ":4242", "a b", "host:99999", "1:2:3"} {
		if got, err := normalizeServer(bad); err == nil {
			t.Errorf("normalizeServer(%q): got %q, want an error", bad, got)
		}
	}
}

// Every command against sc-server with --ca, in text and JSON.
func TestCommandsWithCA(t *testing.T) {
	ts := startServer(t, false)
	base := []string{"--server", ts.addr, "--ca", ts.layout.CACert}
	pin, next := ts.pin(t), ts.nextPin(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"echo", []string{"echo", "hello"}, "hello\n"},
		{"echo joins arguments", []string{"echo", "hello", "world"}, "hello world\n"},
		{"echo empty", []string{"echo", ""}, "\n"},
		{"reverse", []string{"reverse", "añb€😀"}, "😀€bña\n"},
		{"reverse nul", []string{"reverse", "hello", "--nul"}, "olleh\n"},
		{"echo nul", []string{"echo", "hi", "--nul"}, "hi\n"},
		{"keys", []string{"keys"}, "current " + pin.String() + "\nnext " + next.String() + "\nverified: its chain verifies against --ca " + ts.layout.CACert + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustRun(t, "", append(tt.args, base...)...)
			if r.stdout != tt.want {
				t.Errorf("stdout: got %q, want %q", r.stdout, tt.want)
			}
		})
	}
	t.Run("time", func(t *testing.T) {
		r := mustRun(t, "", append([]string{"time"}, base...)...)
		if _, err := time.Parse(proto.TimeLayout, strings.TrimSpace(r.stdout)); err != nil {
			t.Errorf("time: %v", err)
		}
	})
	t.Run("json", func(t *testing.T) {
		r := mustRun(t, "", append([]string{"reverse", "abc", "--json"}, base...)...)
		var got resultJSON
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("%v in %q", err, r.stdout)
		}
		if want := (resultJSON{Server: ts.addr, Type: "reverse", Request: "abc", Reply: "cba"}); got != want {
			t.Errorf("got %+v, want %+v", got, want)
		}
		r = mustRun(t, "", append([]string{"keys", "--json"}, base...)...)
		var keys struct {
			Server, Current string
			Next            []string
		}
		if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil {
			t.Fatal(err)
		}
		if keys.Current != pin.String() || len(keys.Next) != 1 || keys.Next[0] != next.String() {
			t.Errorf("keys JSON: got %+v", keys)
		}
	})
}

// --ca against a server whose certificate another CA issued, or for
// another name: exit 5 with a hint.
func TestUntrustedCertificate(t *testing.T) {
	ts := startServer(t, false)
	other := startServer(t, false)
	tests := []struct {
		name string
		args []string
	}{
		{"other CA", []string{"--server", ts.addr, "--ca", other.layout.CACert}},
		{"wrong name", []string{"--server", ts.addr, "--ca", ts.layout.CACert, "--server-name", "game.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "", false, append([]string{"echo", "x"}, tt.args...)...)
			if r.code != ExitUntrusted || !strings.Contains(r.stderr, "hint: check that --ca") {
				t.Errorf("got exit %d\n%s\nwant %d and a hint", r.code, r.stderr, ExitUntrusted)
			}
			if r.stdout != "" {
				t.Errorf("printed a result: %q", r.stdout)
			}
		})
	}
}

// --pin: the server's pin (or the next one with it) passes, with or without
// --ca; another pin is refused with exit 3 and the loud warning.
func TestPinMode(t *testing.T) {
	ts := startServer(t, false)
	other := startServer(t, false)
	pin, next := ts.pin(t), ts.nextPin(t)
	mustRun(t, "", "echo", "x", "--server", ts.addr, "--pin", pin.String())
	mustRun(t, "", "echo", "x", "--server", ts.addr, "--pin", next.String(), "--pin", pin.String())
	mustRun(t, "", "echo", "x", "--server", ts.addr, "--pin", pin.String(), "--ca", ts.layout.CACert)
	// ca+pin: the CA's own key is in the verified chain, so its pin works.
	mustRun(t, "", "echo", "x", "--server", ts.addr, "--pin", mustPin(t, ts.layout.CACert).String(), "--ca", ts.layout.CACert)

	r := run(t, "", false, "echo", "x", "--server", ts.addr, "--pin", other.pin(t).String())
	if r.code != ExitKeyMismatch {
		t.Errorf("wrong pin: exit %d, want %d\n%s", r.code, ExitKeyMismatch, r.stderr)
	}
	for _, want := range []string{"WARNING", pin.String(), other.pin(t).String(), "host key verification failed"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the warning lacks %q:\n%s", want, r.stderr)
		}
	}
}

// --insecure connects to anything and says so.
func TestInsecure(t *testing.T) {
	ts := startServer(t, false)
	r := mustRun(t, "", "echo", "x", "--server", ts.addr, "--insecure")
	if r.stdout != "x\n" || !strings.Contains(r.stderr, "warning") {
		t.Errorf("got %q and stderr %q; want the echo and a warning", r.stdout, r.stderr)
	}
}

// --plaintext talks to sc-server --plaintext; KEYS is refused there with
// the server-error exit code.
func TestPlaintext(t *testing.T) {
	ts := startServer(t, true)
	r := mustRun(t, "", "reverse", "abc", "--server", ts.addr, "--plaintext")
	if r.stdout != "cba\n" || !strings.Contains(r.stderr, "--plaintext") {
		t.Errorf("got %q, stderr %q", r.stdout, r.stderr)
	}
	r = run(t, "", false, "keys", "--server", ts.addr, "--plaintext", "--json")
	if r.code != ExitServerError {
		t.Errorf("keys on a plaintext server: exit %d, want %d\n%s", r.code, ExitServerError, r.stderr)
	}
	var e errorJSON
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || e.Error.Kind != "server_error" || e.Error.Code != ExitServerError {
		t.Errorf("JSON error: %+v, %v in %q", e, err, r.stdout)
	}
}

// Connection refused: exit 1, and with --json an error object on stdout.
func TestConnectionRefusedJSON(t *testing.T) {
	// Nothing listens on port 1.
	r := run(t, "", false, "time", "--server", "127.0.0.1:1", "--plaintext", "--json", "--timeout", "5s")
	if r.code != cli.ExitFailure {
		t.Fatalf("exit %d, want 1\n%s", r.code, r.stderr)
	}
	var e errorJSON
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil {
		t.Fatalf("%v in %q", err, r.stdout)
	}
	if e.Error.Kind != "error" || e.Error.Code != 1 || !strings.Contains(e.Error.Message, "127.0.0.1:1") {
		t.Errorf("got %+v", e.Error)
	}
	if strings.Count(r.stderr, "sc-client: error:") != 1 {
		t.Errorf("want the error printed once on stderr:\n%s", r.stderr)
	}
}

// chat pipelines 1,000 lines and prints the replies in order, in text and
// as JSON lines.
func TestChatPipelined(t *testing.T) {
	ts := startServer(t, false)
	const n = 1000
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "line %d\r\n", i)
	}
	r := mustRun(t, in.String(), "chat", "--type", "reverse", "--server", ts.addr, "--ca", ts.layout.CACert)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("got %d replies, want %d", len(lines), n)
	}
	for i, l := range lines {
		if want := reverseRunes("line " + strconv.Itoa(i)); l != want {
			t.Fatalf("reply %d: got %q, want %q", i, l, want)
		}
	}

	r = mustRun(t, "a\nb", "chat", "--json", "--nul", "--server", ts.addr, "--ca", ts.layout.CACert)
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	var got []resultJSON
	for sc.Scan() {
		var j resultJSON
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
			t.Fatalf("%v in %q", err, sc.Text())
		}
		got = append(got, j)
	}
	if len(got) != 2 || got[0] != (resultJSON{Type: "echo", Request: "a", Reply: "a"}) || got[1].Reply != "b" {
		t.Errorf("JSON lines: got %+v", got)
	}
}

// A line over --max-message fails the chat (exit 1) after the replies to
// the lines before it.
func TestChatLineTooLong(t *testing.T) {
	ts := startServer(t, false)
	in := "short\n" + strings.Repeat("x", 100) + "\nnever\n"
	r := run(t, in, false, "chat", "--max-message", "50", "--server", ts.addr, "--ca", ts.layout.CACert)
	if r.code != cli.ExitFailure || r.stdout != "short\n" || !strings.Contains(r.stderr, "line 2") {
		t.Errorf("got exit %d, stdout %q, stderr %q; want 1, the first reply, and an error naming line 2", r.code, r.stdout, r.stderr)
	}
}

// chat --random makes --count checked requests of random types.
func TestChatRandom(t *testing.T) {
	ts := startServer(t, false)
	r := mustRun(t, "", "chat", "--random", "--count", "30", "--max-delay", "1ms", "--seed", "7", "--json", "--server", ts.addr, "--ca", ts.layout.CACert)
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	seen := map[string]int{}
	for sc.Scan() {
		var j resultJSON
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
			t.Fatal(err)
		}
		if err := checkReply(map[string]proto.Type{"echo": proto.Echo, "reverse": proto.Reverse, "time": proto.Time}[j.Type], j.Request, j.Reply); err != nil {
			t.Error(err)
		}
		seen[j.Type]++
	}
	if seen["echo"]+seen["reverse"]+seen["time"] != 30 || seen["echo"] == 0 || seen["reverse"] == 0 || seen["time"] == 0 {
		t.Errorf("got %v, want 30 requests of all three types", seen)
	}
	// The same seed makes the same requests.
	again := mustRun(t, "", "chat", "--random", "--count", "30", "--max-delay", "0s", "--seed", "7", "--json", "--server", ts.addr, "--ca", ts.layout.CACert)
	if requests(r.stdout) != requests(again.stdout) {
		t.Error("the same --seed made different requests")
	}
	// --duration bounds an unlimited count.
	start := time.Now()
	mustRun(t, "", "chat", "--random", "--count", "0", "--duration", "300ms", "--max-delay", "20ms", "--server", ts.addr, "--ca", ts.layout.CACert)
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("--duration 300ms took %v", took)
	}
}

// requests returns the request fields of JSON result lines.
func requests(out string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var j resultJSON
		_ = json.Unmarshal(sc.Bytes(), &j)
		b.WriteString(j.Type + " " + j.Request + "\n")
	}
	return b.String()
}

// The root's help lists the exit codes, the distinct key-mismatch one
// included.
func TestHelpListsExitCodes(t *testing.T) {
	r := mustRun(t, "", "--help")
	for _, want := range []string{"Exit codes:", "  3    the server's key is not the trusted one", "  4 ", "  5 ", "  6 ", "130"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}
