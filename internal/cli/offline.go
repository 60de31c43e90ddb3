package cli

import (
	"path/filepath"
	"strings"
)

// NextPubPath returns where the public half of a next key kept offline
// lives: beside the next key, with .pub (certs/server.next.key →
// certs/server.next.pub). sc-cert export-next writes it; sc-server
// announces its pin.
func NextPubPath(nextKey string) string {
	return strings.TrimSuffix(nextKey, filepath.Ext(nextKey)) + ".pub"
}

// RevokedKeysFile is the file of revoked server-key pins beside the
// certificate: sc-cert rotate --revoke-old appends to it and sc-server
// announces it in KEYS (--revoked-keys).
const RevokedKeysFile = "revoked.pins"
