//go:build !cgo || nopkcs11

package pki

// pkcs11Supported is false: this build cannot load PKCS#11 modules, which
// takes cgo (go.step.sm/crypto/kms/pkcs11 builds only with it).
const pkcs11Supported = false

// openBackend always fails with ErrNoPKCS11.
func openBackend(k *keyURI, _, _ string) (tokenBackend, error) {
	return nil, &TokenError{URI: k.redacted, Err: ErrNoPKCS11}
}
