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
	"github.com/spacecaptain/spacecaptain/pinning"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4343", "TCP `ADDRESS` to listen on")
	certFile := flag.String("cert", "", "certificate `FILE` (PEM)")
	keyFile := flag.String("key", "", "key `FILE` (PEM)")
	plaintext := flag.Bool("plaintext", false, "serve without TLS")
	clientAllow := flag.String("client-allow", "", "require a client certificate (tls.RequireAnyClientCert) whose key is on the allow list in `FILE`, checked as sc-server --client-auth require --client-allow FILE checks it (default: no client certificate asked for)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *certFile, *keyFile, *clientAllow, *plaintext); err != nil {
		fmt.Fprintf(os.Stderr, "refserver: error: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, certFile, keyFile, clientAllow string, plaintext bool) error {
	cfg, err := tlsConfig(certFile, keyFile, clientAllow, plaintext)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if clientAllow != "" {
		fmt.Fprintf(os.Stderr, "refserver: listening on %s (tls %v, a client certificate on %s required)\n", ln.Addr(), cfg != nil, clientAllow)
	} else {
		fmt.Fprintf(os.Stderr, "refserver: listening on %s (tls %v)\n", ln.Addr(), cfg != nil)
	}
	return serveListener(ctx, ln, cfg)
}

// tlsConfig returns the server's TLS config: nil for plaintext, Go's
// defaults with the certificate otherwise, and with clientAllow a client
// certificate required and admitted by the allow list.
func tlsConfig(certFile, keyFile, clientAllow string, plaintext bool) (*tls.Config, error) {
	if plaintext {
		if clientAllow != "" {
			return nil, errors.New("--client-allow needs TLS: it can't be used with --plaintext")
		}
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--cert and --key are required unless --plaintext")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading %s and %s: %w", certFile, keyFile, err)
	}
	// Go's defaults otherwise: that is the point of this server.
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientAllow != "" {
		// The mutual TLS yardstick: crypto/tls asks for a certificate and
		// refuses a client without one; the allow list, read once, admits
		// by the key's pin in VerifyConnection (which also runs on resumed
		// sessions), the check sc-server makes.
		v, err := pinning.NewClientVerifier(pinning.ClientVerifierOptions{Mode: pinning.ClientAuthRequire, AllowFile: clientAllow})
		if err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyConnection = v.VerifyConnection
	}
	return cfg, nil
}

// serveListener serves ln until ctx ends, then closes every connection
// and returns once their goroutines have.
func serveListener(ctx context.Context, ln net.Listener, cfg *tls.Config) error {
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
