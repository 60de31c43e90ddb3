//go:build cgo && !nopkcs11

package pki

import (
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
	"go.step.sm/crypto/kms/apiv1"
	kmspkcs11 "go.step.sm/crypto/kms/pkcs11"
)

// pkcs11Supported is true in a build that can open PKCS#11 modules.
const pkcs11Supported = true

// p11Backend is one token opened through go.step.sm/crypto/kms/pkcs11,
// which uses github.com/ThalesGroup/crypto11: a module loaded once per
// process (reference-counted), a session logged in for as long as the
// token is open, and a pool of sessions for the signatures.
type p11Backend struct {
	km *kmspkcs11.PKCS11
}

// openBackend loads the module, finds the token and logs in with pin
// (from says where the PIN came from, for the error when it is wrong).
func openBackend(k *keyURI, pin, from string) (tokenBackend, error) {
	km, err := kmspkcs11.New(context.Background(), apiv1.Options{Type: apiv1.PKCS11, URI: k.forKMS(), Pin: pin})
	if err != nil {
		return nil, openError(k, from, err)
	}
	return &p11Backend{km: km}, nil
}

func (b *p11Backend) signer(k *keyURI) (crypto.Signer, error) {
	s, err := b.km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: k.forKMS()})
	if err != nil {
		return nil, keyError(k, err)
	}
	return s, nil
}

func (b *p11Backend) exists(k *keyURI) bool {
	_, err := b.km.GetPublicKey(&apiv1.GetPublicKeyRequest{Name: k.forKMS()})
	return err == nil
}

func (b *p11Backend) create(k *keyURI, kt KeyType) (crypto.Signer, error) {
	req := &apiv1.CreateKeyRequest{Name: k.forKMS()}
	switch kt {
	case "", KeyECDSAP256:
		req.SignatureAlgorithm = apiv1.ECDSAWithSHA256
	case KeyECDSAP384:
		req.SignatureAlgorithm = apiv1.ECDSAWithSHA384
	case KeyRSA2048, KeyRSA3072, KeyRSA4096:
		req.SignatureAlgorithm = apiv1.SHA256WithRSA
		req.Bits = map[KeyType]int{KeyRSA2048: 2048, KeyRSA3072: 3072, KeyRSA4096: 4096}[kt]
	default:
		return nil, &TokenError{URI: k.redacted, Err: ErrUnsupportedKey, Detail: fmt.Sprintf("key type %q", kt)}
	}
	if _, err := b.km.CreateKey(req); err != nil {
		if errors.Is(err, apiv1.AlreadyExistsError{}) {
			return nil, &TokenError{URI: k.redacted, Err: ErrTokenKeyExists, Detail: k.describe() + " exists already; keys in a token are never replaced", cause: err}
		}
		return nil, keyError(k, err)
	}
	return b.signer(k)
}

func (b *p11Backend) remove(k *keyURI) error {
	if err := b.km.DeleteKey(k.forKMS()); err != nil {
		return keyError(k, err)
	}
	return nil
}

func (b *p11Backend) close() error { return b.km.Close() }

// rv returns the PKCS#11 return value in err's chain, if any.
func rv(err error) (pkcs11.Error, bool) {
	var e pkcs11.Error
	ok := errors.As(err, &e)
	return e, ok
}

// openError explains why a token could not be opened, by the PKCS#11
// return value when there is one (the names are the standard's), else by
// the step the kms reports.
func openError(k *keyURI, from string, err error) error {
	te := &TokenError{URI: k.redacted, cause: err}
	msg := err.Error()
	code, isRV := rv(err)
	switch {
	case isRV && (code == pkcs11.CKR_PIN_INCORRECT || code == pkcs11.CKR_PIN_INVALID || code == pkcs11.CKR_PIN_LEN_RANGE):
		te.Err = ErrTokenPIN
		te.Detail = fmt.Sprintf("the PIN from %s is not the user PIN of %s (%s)", from, k.describeToken(), code.Error())
	case isRV && code == pkcs11.CKR_PIN_LOCKED:
		te.Err = ErrTokenPIN
		te.Detail = fmt.Sprintf("the user PIN of %s is locked after too many wrong PINs (%s): the token's security officer must unlock it", k.describeToken(), code.Error())
	case isRV && code == pkcs11.CKR_PIN_EXPIRED:
		te.Err = ErrTokenPIN
		te.Detail = fmt.Sprintf("the user PIN of %s has expired (%s): set a new one", k.describeToken(), code.Error())
	case isRV && (code == pkcs11.CKR_TOKEN_NOT_PRESENT || code == pkcs11.CKR_TOKEN_NOT_RECOGNIZED || code == pkcs11.CKR_DEVICE_REMOVED):
		te.Err = ErrTokenNotFound
		te.Detail = fmt.Sprintf("%s is not present (%s)", k.describeToken(), code.Error())
	case strings.Contains(msg, "could not find PKCS#11 token"):
		te.Err = ErrTokenNotFound
		te.Detail = fmt.Sprintf("%s has no %s (check the URI's %s)", k.moduleName(), tokenSelector(k), tokenAttr(k))
	case strings.Contains(msg, "failed to open module"):
		te.Err = ErrTokenModule
		if k.module == "" {
			te.Detail = "the key URI has no module-path and the default module, p11-kit-proxy, could not be loaded: name the module with module-path"
		} else {
			te.Detail = fmt.Sprintf("%s could not be loaded: it is not a shared library for this system, or a library it needs is missing (module-path in the key URI)", k.module)
		}
	case strings.Contains(msg, "failed to initialize module"):
		te.Err = ErrTokenModule
		te.Detail = fmt.Sprintf("%s failed to start (C_Initialize: %s): its own configuration may be missing or wrong (SoftHSM2: the file SOFTHSM2_CONF names, or /etc/softhsm/softhsm2.conf, and its token directory)", k.moduleName(), rvName(err))
	case strings.Contains(msg, "failed to list PKCS#11 slots"):
		te.Err = ErrTokenModule
		te.Detail = fmt.Sprintf("%s could not list its slots (%s)", k.moduleName(), rvName(err))
	default:
		te.Err = ErrKeyUnavailable
		te.Detail = fmt.Sprintf("opening %s: %v", k.describeToken(), err)
	}
	return te
}

// keyError explains why a key in an open token could not be found, made
// or removed.
func keyError(k *keyURI, err error) error {
	te := &TokenError{URI: k.redacted, cause: err}
	switch {
	case errors.Is(err, apiv1.NotFoundError{}) || strings.Contains(err.Error(), "not found"):
		te.Err = ErrTokenKeyNotFound
		te.Detail = fmt.Sprintf("%s has no key %s (check the URI's object and id)", k.describeToken(), keySelector(k))
	default:
		te.Err = ErrKeyUnavailable
		te.Detail = fmt.Sprintf("%s: %s", k.describe(), rvName(err))
	}
	return te
}

// rvName is the PKCS#11 return value's name when err carries one, else
// err's text.
func rvName(err error) string {
	if code, ok := rv(err); ok {
		return code.Error()
	}
	return err.Error()
}

// tokenSelector says which token the URI asks for.
func tokenSelector(k *keyURI) string {
	switch {
	case k.token != "":
		return fmt.Sprintf("token labelled %q", k.token)
	case k.serial != "":
		return fmt.Sprintf("token with serial %q", k.serial)
	}
	return fmt.Sprintf("token in slot %s", k.slot)
}

// tokenAttr is the URI attribute that selects the token.
func tokenAttr(k *keyURI) string {
	switch {
	case k.token != "":
		return "token="
	case k.serial != "":
		return "serial="
	}
	return "slot-id="
}

// keySelector says which key the URI asks for.
func keySelector(k *keyURI) string {
	var parts []string
	if k.object != "" {
		parts = append(parts, fmt.Sprintf("labelled %q", k.object))
	}
	if len(k.id) > 0 {
		parts = append(parts, "with id "+hex.EncodeToString(k.id))
	}
	return strings.Join(parts, " and ")
}
