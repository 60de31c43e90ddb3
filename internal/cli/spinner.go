package cli

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// StartSpinner shows msg and a spinner on w while slow work runs (RSA-4096
// generation takes seconds), and returns the function that stops it and
// clears the line. When w is not a terminal it prints nothing at all, so
// piped output and logs stay clean.
func StartSpinner(w io.Writer, msg string) (stop func()) {
	if !IsTerminal(w) {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		frames := `|/-\`
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			fmt.Fprintf(w, "\r%s %c", msg, frames[i%len(frames)])
			select {
			case <-done:
				// Erase the line: \r, then clear to its end.
				fmt.Fprint(w, "\r\x1b[K")
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}
