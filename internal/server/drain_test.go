package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// TestShutdownStopsAtBatch: a draining server answers what it has read
// and no more. A client that has pipelined far more than one batch does
// not hold the server open until it stops sending: its connection closes
// after the batch in hand, and Shutdown returns nil.
func TestShutdownStopsAtBatch(t *testing.T) {
	const echoes = 4000 // 2 MB: far more than one read takes
	forEach(t, []mode{modeTLS13, modePlaintext}, func(t *testing.T, engine string, m mode) {
		entered, release := make(chan struct{}, 1), make(chan struct{})
		e := start(t, engine, m, Options{Keys: func() []byte {
			entered <- struct{}{}
			<-release
			return []byte("keys")
		}})
		c := e.dial()
		// An ECHO first, longer than the goroutine engine reads when it
		// wakes (firstRead), so that it reads on into the stream.
		batch := proto.AppendFrame(nil, proto.Echo, make([]byte, 512))
		batch = proto.AppendFrame(batch, proto.Keys, nil)
		for range echoes {
			batch = proto.AppendFrame(batch, proto.Echo, make([]byte, 512))
		}
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			_, _ = c.Write(batch) // ends in an error once the server closes
		}()
		<-entered // the server has read a batch and is answering it

		shutdown := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			shutdown <- e.srv.Shutdown(ctx)
		}()
		if err := e.serveResult(); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve: got %v, want ErrServerClosed once Shutdown begins", err)
		}
		close(release)
		if err := <-shutdown; err != nil {
			t.Fatalf("Shutdown: got %v, want nil", err)
		}
		e.rec.waitClosed(t, CloseShutdown, 1, time.Second)
		e.rec.mu.Lock()
		answered := e.rec.messages[proto.Echo]
		e.rec.mu.Unlock()
		if answered >= echoes/2 {
			t.Errorf("answered %d of %d pipelined ECHOs after Shutdown began, want only the batch in hand", answered, echoes)
		}
		c.Close()
		<-wrote
	})
}
