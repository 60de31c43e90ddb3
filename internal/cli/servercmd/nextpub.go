package servercmd

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
	"github.com/spacecaptain/spacecaptain/pinning"
)

// nextPubPath returns the default public next key beside the next key:
// certs/server.next.key → certs/server.next.pub.
func nextPubPath(nextKey string) string { return cli.NextPubPath(nextKey) }

// parsePublicNextKey returns the pin of the public key in a public next
// key file: one PEM "PUBLIC KEY" block. A private key is refused: the file
// exists so that the private half can stay offline.
func parsePublicNextKey(path string, data []byte) (string, error) {
	block, _ := pem.Decode(data)
	switch {
	case block == nil:
		return "", fmt.Errorf("public next key %q: no PEM block: want a PUBLIC KEY (sc-cert export-next writes one)", path)
	case strings.Contains(block.Type, "PRIVATE KEY"):
		return "", fmt.Errorf("public next key %q holds a private key (%s): it must hold only the public half, so that the private one can stay offline (sc-cert export-next)", path, block.Type)
	case block.Type != "PUBLIC KEY":
		return "", fmt.Errorf("public next key %q: a %s PEM block: want a PUBLIC KEY", path, block.Type)
	}
	if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
		return "", fmt.Errorf("public next key %q: %w", path, err)
	}
	return pinning.PinOfSPKI(block.Bytes).String(), nil
}

// readPublicNextKey reads the public next key at path, as a trust file:
// it decides which key clients accept next. A missing file is no key.
func readPublicNextKey(path string) (pin string, sum [sha256.Size]byte, present bool, err error) {
	data, _, err := trustfile.Read(path, trustfile.PublicNextKey)
	if errors.Is(err, fs.ErrNotExist) {
		return "", sum, false, nil
	}
	if err != nil {
		return "", sum, false, fmt.Errorf("reading the public next key %q: %w", path, err)
	}
	pin, err = parsePublicNextKey(path, data)
	if err != nil {
		return "", sum, true, err
	}
	return pin, sha256.Sum256(data), true, nil
}
