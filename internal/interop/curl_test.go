package interop

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
)

// scServer is a real sc-server process started by startSCServer.
type scServer struct {
	// Addr is where it listens (127.0.0.1 and the port it picked).
	Addr string
	// Pin and NextPin are the pins its "serving" log line reports.
	Pin, NextPin string
	// MetricsAddr is where --metrics-listen serves, when given.
	MetricsAddr string

	proc    *os.Process
	done    chan struct{} // closed when the process has exited
	exitErr error         // its exit status, once done is closed
	mu      sync.Mutex
	stderr  bytes.Buffer // its log, JSON lines
}

// Log returns what the server has logged so far.
func (s *scServer) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// Signal sends sig to the server process (SIGHUP: reload).
func (s *scServer) Signal(sig os.Signal) error { return s.proc.Signal(sig) }

// Wait waits up to timeout for the process to exit (after a Signal) and
// returns its exit status; it fails the test if it does not exit.
func (s *scServer) Wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-s.done:
		return s.exitErr
	case <-time.After(timeout):
		t.Fatalf("sc-server did not exit within %v:\n%s", timeout, s.Log())
	}
	return nil
}

// startSCServer runs the real sc-server in dir, listening on 127.0.0.1:0
// with JSON logs, plus args, and returns once it serves: its "serving" log
// line gives the address and pins. With no --cert or --key in args it uses
// dir/certs, making the default layout there on its first run. When the
// test ends the server gets SIGTERM and must exit 0 after its graceful
// drain (on Windows, which has no SIGTERM, it is killed).
func startSCServer(t *testing.T, dir string, args ...string) *scServer {
	t.Helper()
	cmd := exec.Command(bin(t, "sc-server"), append([]string{"--listen", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SC_KEY_PASSWORD=")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := childproc.Start(cmd); err != nil {
		t.Fatal(err)
	}
	s := &scServer{proc: cmd.Process, done: make(chan struct{})}
	serving := make(chan logLine, 1)
	exited := make(chan error, 1)
	go func() {
		// Read the log to its end (the server's exit), so that it never
		// blocks on a full pipe; only then may Wait be called.
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
		for sc.Scan() {
			s.mu.Lock()
			s.stderr.Write(sc.Bytes())
			s.stderr.WriteByte('\n')
			s.mu.Unlock()
			var l logLine
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "serving" {
				select {
				case serving <- l:
				default:
				}
			}
		}
		err := cmd.Wait()
		s.exitErr = err
		close(s.done)
		exited <- err
	}()
	stopped := false
	t.Cleanup(func() {
		if stopped {
			return
		}
		graceful := cmd.Process.Signal(syscall.SIGTERM) == nil
		if !graceful {
			cmd.Process.Kill()
		}
		select {
		case err := <-exited:
			if graceful && err != nil {
				t.Errorf("sc-server did not exit 0 after SIGTERM: %v\n%s", err, s.Log())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("sc-server did not stop within 30s of SIGTERM:\n%s", s.Log())
			<-exited
		}
	})
	select {
	case l := <-serving:
		s.Addr, s.Pin, s.NextPin, s.MetricsAddr = l.Addr, l.Pin, l.NextPin, l.MetricsAddr
	case err := <-exited:
		stopped = true
		t.Fatalf("sc-server exited before serving (%v):\n%s", err, s.Log())
	case <-time.After(30 * time.Second):
		t.Fatalf("sc-server did not serve within 30s:\n%s", s.Log())
	}
	return s
}

// logLine is the part of sc-server's JSON log lines startSCServer reads.
type logLine struct {
	Msg     string `json:"msg"`
	Addr    string `json:"addr"`
	Pin     string `json:"pin"`
	NextPin string `json:"next_pin"`
	// MetricsAddr is set with --metrics-listen.
	MetricsAddr string `json:"metrics_addr"`
}

// curlTLSFailures are curl's exit codes for failures in or about TLS
// (curl(1), EXIT CODES), and for not reaching the server at all: none of
// them may happen when the pin is right.
var curlTLSFailures = map[int]string{
	7:  "failed to connect",
	28: "timeout",
	35: "SSL connect error (handshake failed)",
	51: "peer certificate or fingerprint not OK",
	53: "SSL crypto engine not found",
	54: "cannot set SSL crypto engine",
	58: "problem with the local certificate",
	59: "could not use the cipher",
	60: "peer certificate cannot be authenticated",
	66: "SSL engine initialization failed",
	77: "problem reading the CA cert",
	80: "SSL shutdown failed",
	82: "could not load the CRL file",
	83: "issuer check failed",
	90: "SSL public key does not match the pinned public key",
	91: "invalid SSL certificate status",
}

// curl's --pinnedpubkey agrees with our pins, against the real sc-server
// (issue 4): with our pin it passes the TLS handshake and the pin check and
// fails only later, on the Space Captain reply that is not HTTP; with any
// other pin (the next key's, before the rollover, included) it exits 90.
// The pin sc-cert pin show prints is the one the server logs and curl
// computes.
func TestCurlPinnedPubKey(t *testing.T) {
	curl := needTool(t, "curl")
	scCert := bin(t, "sc-cert")
	dir := t.TempDir()
	srv := startSCServer(t, dir) // a fresh directory: it makes certs/ first

	var files, remote pinShow
	mustJSON(t, run(t, dir, scCert, "pin", "show", "certs", "--next", "--json"), &files)
	mustJSON(t, run(t, dir, scCert, "pin", "show", srv.Addr, "--next", "--json", "--known-hosts", filepath.Join(dir, "known_hosts")), &remote)
	if files.Current == "" || len(files.Next) != 1 {
		t.Fatalf("sc-cert pin show certs --next: got %+v, want a current and a next pin", files)
	}
	next := files.Next[0]
	if files.Current != srv.Pin || next != srv.NextPin {
		t.Errorf("pin show of the files: got %s and %s; sc-server logs %s and %s", files.Current, next, srv.Pin, srv.NextPin)
	}
	if remote.Pins != files.Pins || remote.Verified == nil || *remote.Verified {
		t.Errorf("pin show of the server: got %+v, want the pins %s, unverified", remote, files.Pins)
	}
	const wrong = "sha256//q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="

	for _, v := range []struct {
		name  string
		flags []string
		seen  string // in curl -v's output
	}{
		{"TLS 1.2", []string{"--tlsv1.2", "--tls-max", "1.2"}, "SSL connection using TLSv1.2"},
		{"TLS 1.3", []string{"--tlsv1.3"}, "SSL connection using TLSv1.3"},
	} {
		t.Run(v.name, func(t *testing.T) {
			tests := []struct {
				name string
				pins string
				ok   bool
			}{
				{"our pin", files.Current, true},
				{"current and next", files.Pins, true},
				{"next first", next + ";" + files.Current, true},
				{"next only", next, false},
				{"wrong pin", wrong, false},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					args := append([]string{"-v", "-k", "--max-time", "20", "-o", os.DevNull, "--pinnedpubkey", tt.pins}, v.flags...)
					_, stderr, err := runErr(dir, nil, curl, append(args, "https://"+srv.Addr+"/")...)
					code := 0
					var ee *exec.ExitError
					if errors.As(err, &ee) {
						code = ee.ExitCode()
					} else if err != nil {
						t.Fatalf("running curl: %v", err)
					}
					if !strings.Contains(stderr, v.seen) {
						t.Errorf("curl -v does not say %q:\n%s", v.seen, stderr)
					}
					// curl prints the hash of the key it checked.
					if !strings.Contains(stderr, "public key hash: "+files.Current) {
						t.Errorf("curl -v does not show the hash %s:\n%s", files.Current, stderr)
					}
					if tt.ok {
						if why, bad := curlTLSFailures[code]; bad {
							t.Errorf("curl --pinnedpubkey %s: exit %d (%s), want a failure after the handshake (not HTTP):\n%s", tt.pins, code, why, stderr)
						}
						return
					}
					if code != 90 {
						t.Errorf("curl --pinnedpubkey %s: exit %d, want 90 (pinned public key mismatch):\n%s", tt.pins, code, stderr)
					}
				})
			}
		})
	}
}

// pinShow is the part of sc-cert pin show --json the tests read.
type pinShow struct {
	Current  string   `json:"current"`
	Next     []string `json:"next"`
	Pins     string   `json:"pins"`
	Verified *bool    `json:"verified"`
}

func mustJSON(t *testing.T, data string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(data), v); err != nil {
		t.Fatalf("decoding %q: %v", data, err)
	}
}
