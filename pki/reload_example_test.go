package pki_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spacecaptain/spacecaptain/pki"
)

// Serve a certificate that follows the files on disk. A server wires
// GetCertificate into its tls.Config (leaving Certificates empty), runs
// the source's watcher with Run, and calls Reload on SIGHUP; here a
// rotation is followed by an explicit Reload.
func ExampleNewCertReloader() {
	dir, err := os.MkdirTemp("", "certs")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l := pki.DefaultLayout(dir)
	if _, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: dir}); err != nil {
		log.Fatal(err)
	}

	src, err := pki.NewCertReloader(pki.CertReloaderOptions{
		CertPath:    l.ServerCert,
		KeyPath:     l.ServerKey,
		NextKeyPath: l.NextKey,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{GetCertificate: src.GetCertificate, MinVersion: tls.VersionTLS12}
	_ = cfg // handed to the server; go src.Run(ctx) watches the directory

	before := src.State()
	if _, err := pki.Rotate(context.Background(), pki.RotateOptions{CertPath: l.ServerCert}); err != nil {
		log.Fatal(err)
	}
	if err := src.Reload(); err != nil {
		log.Fatal(err)
	}
	after := src.State()
	fmt.Println("new serial:", after.Certificate.SerialNumber.Cmp(before.Certificate.SerialNumber) != 0)
	fmt.Println("same key (pin):", bytes.Equal(after.Certificate.RawSubjectPublicKeyInfo, before.Certificate.RawSubjectPublicKeyInfo))
	fmt.Println("next key announced:", after.NextKey != nil)
	fmt.Println("generation:", after.Generation)
	// Output:
	// new serial: true
	// same key (pin): true
	// next key announced: true
	// generation: 2
}

// Share session-ticket keys between servers behind one load balancer: one
// file, rotated from one place, loaded by every server.
func ExampleNewTicketKeys() {
	dir, err := os.MkdirTemp("", "tickets")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ticket.keys")
	if err := pki.RotateTicketKeyFile(path, pki.TicketKeyFileOptions{}); err != nil {
		log.Fatal(err)
	}

	keys, err := pki.NewTicketKeys(pki.TicketKeysOptions{
		File:     path,
		Logger:   slog.New(slog.DiscardHandler),
		OnReload: func(ev pki.TicketKeysEvent) { fmt.Println(ev.Trigger, ev.Result, ev.Keys) },
	})
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	cfg.WrapSession, cfg.UnwrapSession = keys.WrapSession, keys.UnwrapSession

	// Later, from cron or sc-cert: a new key first, the previous one kept.
	if err := pki.RotateTicketKeyFile(path, pki.TicketKeyFileOptions{}); err != nil {
		log.Fatal(err)
	}
	if err := keys.Reload(); err != nil { // or let keys.Run(ctx) notice
		log.Fatal(err)
	}
	// Output:
	// initial changed 1
	// reload changed 2
}

// Renew a certificate on its own key when two thirds of its lifetime have
// passed; here the clock is moved 61 days ahead.
func ExampleNewRenewer() {
	dir, err := os.MkdirTemp("", "certs")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l := pki.DefaultLayout(dir)
	if _, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: dir}); err != nil {
		log.Fatal(err)
	}
	later := time.Now().Add(61 * 24 * time.Hour)
	r, err := pki.NewRenewer(pki.RenewerOptions{
		CertPath: l.ServerCert,
		Now:      func() time.Time { return later },
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := r.Check(context.Background()) // Run(ctx) calls it on schedule
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("renewed:", res != nil && !res.Skipped)
	fmt.Println("same key (pin):", bytes.Equal(res.New.RawSubjectPublicKeyInfo, res.Old.RawSubjectPublicKeyInfo))
	fmt.Println("signed by the local CA:", res.Issuer != nil)
	// Output:
	// renewed: true
	// same key (pin): true
	// signed by the local CA: true
}
