package metrics

import "errors"

// ErrNoCertificate is returned by [Metrics.CheckCertificate] before a
// certificate has been given to [Metrics.CertLoaded].
var ErrNoCertificate = errors.New("no certificate loaded")
