package pinning

import "errors"

// ErrNoPeerCertificate means the server presented no certificate, so there is
// no key to check.
var ErrNoPeerCertificate = errors.New("pinning: the server presented no certificate")
