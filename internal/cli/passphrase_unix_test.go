//go:build unix

package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// --key-password-file (and sc-cert's --password-file) naming a FIFO that
// nobody writes fails within the pipe timeout, naming the file, instead of
// blocking forever as os.ReadFile did; the /dev/fd/N that a shell's <(echo
// pw) passes is read.
func TestPassphraseFromPipe(t *testing.T) {
	t.Run("FIFO nobody writes", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "pw")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		p := &Passphrase{File: fifo, PipeTimeout: 300 * time.Millisecond}
		done := make(chan error, 1)
		go func() {
			_, err := p.Source("the server key")()
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, trustfile.ErrPipeTimeout) || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "nothing was written") {
				t.Errorf("got %v, want ErrPipeTimeout naming %s and saying nothing was written", err, fifo)
			}
		case <-time.After(10 * time.Second):
			// Let the blocked reader go, so the test binary can end.
			if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
			t.Fatal("reading the passphrase from a FIFO nobody writes blocked past 10s")
		}
	})
	t.Run("process substitution", func(t *testing.T) {
		if _, err := os.Stat("/dev/fd/0"); err != nil {
			t.Skip("no /dev/fd on this system")
		}
		// What <(echo pw) gives: the read end of a pipe as /dev/fd/N,
		// its writer done.
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		w.WriteString("correct horse\nsecond line\n")
		w.Close()
		p := &Passphrase{File: fmt.Sprintf("/dev/fd/%d", r.Fd())}
		if got, err := p.Source("the server key")(); err != nil || string(got) != "correct horse" {
			t.Errorf("got %q, %v; want the first line", got, err)
		}
	})
}
