//go:build unix

package interop

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pki"
)

// SIGTERM stops the real sc-server gracefully: it exits 0 well within
// --shutdown-timeout, an idle connection gets close_notify (a clean EOF,
// not a reset), and requests already sent on a busy one are all answered
// before its close_notify.
func TestSIGTERMDrains(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(bin(t, "sc-server"), "--listen", "127.0.0.1:0", "--log-format", "json", "--shutdown-timeout", "20s")
	cmd.Dir = dir
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := childproc.Start(cmd); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		log strings.Builder
	)
	addrc := make(chan string, 1)
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			mu.Lock()
			log.WriteString(sc.Text() + "\n")
			mu.Unlock()
			var l logLine
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "serving" {
				addrc <- l.Addr
			}
		}
		exited <- cmd.Wait()
	}()
	logText := func() string { mu.Lock(); defer mu.Unlock(); return log.String() }
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})
	var addr string
	select {
	case addr = <-addrc:
	case err := <-exited:
		t.Fatalf("sc-server exited early: %v\n%s", err, logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("sc-server did not serve within 30s:\n%s", logText())
	}

	ca, err := pki.ReadCertificateFile(filepath.Join(dir, "certs", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	dial := func() *client.Conn {
		c, err := client.Dial(context.Background(), addr, client.Options{TLSConfig: &tls.Config{RootCAs: pool}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Do(context.Background(), proto.Echo, []byte("x")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		return c
	}
	idle, busy := dial(), dial()
	const n = 300
	for i := range n {
		if err := busy.Send(proto.Echo, []byte{byte(i), byte(i >> 8)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := busy.Flush(); err != nil {
		t.Fatal(err)
	}
	// The first reply shows the server has the batch (one TLS record).
	if f, err := busy.Receive(); err != nil || f.Body[0] != 0 {
		t.Fatalf("first reply: %v, %v", f, err)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("sc-server after SIGTERM: %v, want exit 0\n%s", err, logText())
		}
		if took := time.Since(start); took > 15*time.Second {
			t.Errorf("stopping took %v", took)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("sc-server did not exit within 30s of SIGTERM:\n%s", logText())
	}
	if _, err := idle.Receive(); !errors.Is(err, io.EOF) {
		t.Errorf("idle connection after SIGTERM: got %v, want io.EOF (close_notify)", err)
	}
	got := 1
	for ; ; got++ {
		f, err := busy.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("busy connection after %d replies: %v, want the rest, then io.EOF", got, err)
		}
		if int(f.Body[0])|int(f.Body[1])<<8 != got {
			t.Fatalf("reply %d out of order", got)
		}
	}
	if got != n {
		t.Errorf("got %d of the %d replies before close_notify", got, n)
	}
	if !strings.Contains(logText(), `"msg":"shutdown complete"`) {
		t.Errorf("no graceful drain in the log:\n%s", logText())
	}
}
