package promcheck

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// ScrapeServer builds sc-server with the go command (from the module this
// package is in, so run it inside the module), runs it in dir on
// 127.0.0.1 with --metrics-listen and the default layout its first run
// makes, makes one TLS connection with an ECHO through it, and returns its
// /metrics page. The process is stopped by its PID before ScrapeServer
// returns.
func ScrapeServer(ctx context.Context, dir string) ([]byte, error) {
	bin := filepath.Join(dir, "sc-server")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/spacecaptain/spacecaptain/cmd/sc-server")
	build.Env = os.Environ()
	if os.Getenv("GOTOOLCHAIN") == "" {
		build.Env = append(build.Env, "GOTOOLCHAIN=auto") // go.mod asks for a newer Go
	}
	if out, err := childproc.CombinedOutput(build); err != nil {
		return nil, fmt.Errorf("building sc-server: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-format", "json")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SC_KEY_PASSWORD=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := childproc.Start(cmd); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	type serving struct {
		Msg, Addr   string
		MetricsAddr string `json:"metrics_addr"`
	}
	up := make(chan serving, 1)
	var log bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.Write(sc.Bytes())
			log.WriteByte('\n')
			var l serving
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "serving" {
				up <- l
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		exited <- cmd.Wait()
	}()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return errors.New("sc-server did not stop within 30s of SIGTERM")
		}
	}
	var l serving
	select {
	case l = <-up:
	case err := <-exited:
		return nil, fmt.Errorf("sc-server exited before serving (%v)", err)
	case <-time.After(60 * time.Second):
		_ = stop()
		return nil, errors.New("sc-server did not serve within 60s")
	}
	page, err := exercise(ctx, dir, l.Addr, l.MetricsAddr)
	if serr := stop(); err == nil && serr != nil {
		err = fmt.Errorf("stopping sc-server: %w", serr)
	}
	if err != nil {
		return nil, fmt.Errorf("%w\nsc-server's log:\n%s", err, log.String())
	}
	return page, nil
}

// exercise makes one connection with an ECHO and a KEYS, trusting the CA
// the server's first run made, and scrapes the metrics.
func exercise(ctx context.Context, dir, addr, metricsAddr string) ([]byte, error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, "certs", "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no certificate in certs/ca.crt")
	}
	c, err := client.Dial(ctx, addr, client.Options{TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		return nil, err
	}
	_, err = c.Do(ctx, proto.Echo, []byte("metrics"))
	if err == nil {
		_, _, err = c.Keys(ctx)
	}
	c.Close()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}
