package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// Mutual TLS scenario IDs (issue 14).
const (
	mtlsHsP256     = "mtls-hs-full-p256-tls13"
	mtlsHsResume   = "mtls-hs-resume-p256-tls13"
	mtlsIdle15k64  = "mtls-idle-15000x64B-tls13"
	mtlsIdentityCN = "bench"
)

// mtlsScenarios are the mutual TLS lines of a full run, each timed by d:
// the same commands as their TLS-only lines (hsP256, hsP256Resume,
// idle15k64), with the bench identity presented and required.
func mtlsScenarios(d time.Duration) []scenario {
	dur := d.String()
	return []scenario{
		{ID: mtlsHsP256, Title: "full mutual TLS handshakes, TLS 1.3, P-256 server and client keys, default groups", Cert: certP256, Ref: true, MTLS: true,
			Args: []string{"handshake", "--tls", "1.3", "--conns", "8", "--duration", dur}},
		{ID: mtlsHsResume, Title: "resumed mutual TLS handshakes, TLS 1.3, P-256 server and client keys", Cert: certP256, Ref: true, MTLS: true,
			Args: []string{"handshake", "--tls", "1.3", "--resume", "--conns", "8", "--duration", dur}},
		{ID: mtlsIdle15k64, Title: "15,000 idle mutual TLS connections after one 64 B ECHO, TLS 1.3", Cert: certP256, Ref: true, MTLS: true, Timeout: 5 * time.Minute,
			Args: []string{"idle", "--tls", "1.3", "--conns", "15000", "--size", "64", "--settle", "3s", "--duration", "4s"}},
	}
}

// makeIdentity writes the bench identity, a P-256 key (mode 0600) that
// sc-client bench --identity presents, and the allow list naming it that
// the servers of the mutual TLS scenarios are given, in a new directory
// under dir.
func makeIdentity(dir string) (keyFile, allowFile string, err error) {
	d, err := os.MkdirTemp(dir, "identity-")
	if err != nil {
		return "", "", err
	}
	key, err := pki.GenerateKey(pki.KeyECDSAP256)
	if err != nil {
		return "", "", err
	}
	keyFile = filepath.Join(d, "bench.key")
	if err := pki.WriteKeyFile(keyFile, key, pki.WriteOptions{}); err != nil {
		return "", "", err
	}
	pin, err := pinning.PinOfPublicKey(key.Public())
	if err != nil {
		return "", "", err
	}
	allowFile = filepath.Join(d, "allow")
	line := fmt.Sprintf("%s name=%s\n", pin, mtlsIdentityCN)
	if err := os.WriteFile(allowFile, []byte(line), 0o644); err != nil {
		return "", "", err
	}
	return keyFile, allowFile, nil
}
