package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4343", "TCP `ADDRESS` to listen on")
	certFile := flag.String("cert", "", "certificate `FILE` (PEM)")
	keyFile := flag.String("key", "", "key `FILE` (PEM)")
	plaintext := flag.Bool("plaintext", false, "serve without TLS")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *certFile, *keyFile, *plaintext); err != nil {
		fmt.Fprintf(os.Stderr, "refserver: error: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, certFile, keyFile string, plaintext bool) error {
	var cfg *tls.Config
	if !plaintext {
		if certFile == "" || keyFile == "" {
			return errors.New("--cert and --key are required unless --plaintext")
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("loading %s and %s: %w", certFile, keyFile, err)
		}
		// Go's defaults otherwise: that is the point of this server.
		cfg = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "refserver: listening on %s (tls %v)\n", ln.Addr(), cfg != nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if cfg != nil {
			c = tls.Server(c, cfg)
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			serve(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
}

// serve answers requests one by one, each reply in its own Write.
func serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	var hdr [proto.HeaderSize]byte
	body := make([]byte, 0, 256)
	out := make([]byte, 0, 256)
	env := proto.Env{}
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		t := proto.Type(binary.LittleEndian.Uint32(hdr[:]))
		n := binary.LittleEndian.Uint32(hdr[4:])
		if n > proto.DefaultMaxBody {
			c.Write(proto.AppendError(out[:0], fmt.Sprintf("message length %d exceeds the maximum of %d bytes", n, proto.DefaultMaxBody)))
			return
		}
		body = body[:0]
		if cap(body) < int(n) {
			body = make([]byte, 0, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		out = proto.AppendReply(out[:0], proto.Frame{Type: t, Body: body}, env)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}
