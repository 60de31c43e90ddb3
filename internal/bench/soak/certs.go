package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// layoutFiles are the files of the default layout, all served through the
// "..data" symlink.
var layoutFiles = []string{pki.CACertFile, pki.CAKeyFile, pki.ServerCertFile, pki.ServerKeyFile, pki.NextKeyFile}

// certDir is the server's certificate directory, laid out as a Kubernetes
// secret volume: each file is a symlink through "..data", itself a symlink
// to the current generation directory.
//
//	certs/server.crt -> ..data/server.crt
//	certs/..data     -> ..gen_0001
//	certs/..gen_0001/server.crt
type certDir struct {
	dir    string // certs/
	scCert string // the sc-cert binary
	gen    int
}

func (c *certDir) genDir(n int) string { return filepath.Join(c.dir, fmt.Sprintf("..gen_%04d", n)) }

// current is the generation directory through "..data": a path whose
// files sc-cert rotate replaces in place, in the generation being served.
func (c *certDir) current() string { return filepath.Join(c.dir, "..data") }

// newCertDir makes the default layout (sc-cert init) in the first
// generation and links it.
func newCertDir(ctx context.Context, scCert, dir string) (*certDir, error) {
	c := &certDir{dir: dir, scCert: scCert, gen: 1}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if _, err := c.run(ctx, "init", "--dir", c.genDir(1)); err != nil {
		return nil, err
	}
	for _, f := range layoutFiles {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			return nil, err
		}
	}
	if err := os.Symlink(filepath.Base(c.genDir(1)), c.current()); err != nil {
		return nil, err
	}
	return c, nil
}

// run runs sc-cert with args and returns its standard output; the process
// is waited for (and killed by its PID if ctx ends first).
func (c *certDir) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.scCert, args...)
	cmd.Env = append(os.Environ(), "SC_KEY_PASSWORD=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := childproc.Run(cmd); err != nil {
		return nil, fmt.Errorf("sc-cert %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// rotated is what sc-cert rotate --json says.
type rotated struct {
	NewSerial string `json:"new_serial"`
	Pin       string `json:"pin"`
	Promoted  bool   `json:"promoted"`
}

// rotate runs sc-cert rotate on the certificate in dir.
func (c *certDir) rotate(ctx context.Context, dir string, promote bool) (rotated, error) {
	args := []string{"rotate", "--cert", filepath.Join(dir, pki.ServerCertFile), "--json"}
	if promote {
		args = append(args, "--promote-next")
	}
	out, err := c.run(ctx, args...)
	if err != nil {
		return rotated{}, err
	}
	var r rotated
	if err := json.Unmarshal(out, &r); err != nil || r.NewSerial == "" {
		return rotated{}, fmt.Errorf("sc-cert rotate printed no result (%v): %s", err, out)
	}
	return r, nil
}

// nextPin is the pin of the next key being served.
func (c *certDir) nextPin() (string, error) {
	p, err := pinning.ReadPinFile(filepath.Join(c.current(), pki.NextKeyFile))
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

// dataSwap does what the kubelet does with an updated secret: it writes a
// new generation directory — a copy of the current one, its certificate
// re-issued on the same key — links "..data_tmp" to it, renames that over
// "..data" and removes the old generation.
func (c *certDir) dataSwap(ctx context.Context) (rotated, error) {
	old, next := c.genDir(c.gen), c.genDir(c.gen+1)
	if err := os.Mkdir(next, 0o755); err != nil {
		return rotated{}, err
	}
	for _, f := range layoutFiles {
		if err := copyFile(filepath.Join(old, f), filepath.Join(next, f)); err != nil {
			return rotated{}, err
		}
	}
	r, err := c.rotate(ctx, next, false)
	if err != nil {
		return rotated{}, err
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(next), tmp); err != nil {
		return rotated{}, err
	}
	if err := os.Rename(tmp, c.current()); err != nil {
		return rotated{}, err
	}
	c.gen++
	if err := os.RemoveAll(old); err != nil {
		return rotated{}, err
	}
	return r, nil
}

// copyFile copies a file with its permission bits (keys stay 0600).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// apply does one rotation of kind and returns what sc-cert said; the
// change is on disk when it returns.
func (c *certDir) apply(ctx context.Context, kind string, server *serverProc) (rotated, error) {
	switch kind {
	case RotateKeepKey:
		return c.rotate(ctx, c.current(), false)
	case RotatePromote:
		return c.rotate(ctx, c.current(), true)
	case RotateDataSwap:
		return c.dataSwap(ctx)
	case RotateSIGHUP:
		r, err := c.rotate(ctx, c.current(), false)
		if err != nil {
			return r, err
		}
		if err := server.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			return r, fmt.Errorf("sending SIGHUP to sc-server (pid %d): %w", server.pid, err)
		}
		return r, nil
	}
	return rotated{}, fmt.Errorf("unknown kind of rotation %q", kind)
}

// servedWithin is how long a rotation may take to reach new handshakes
// before it counts as failed: the server's debounce is 100 ms.
const servedWithin = 10 * time.Second
