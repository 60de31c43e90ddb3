package cli

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
)

// groups are the key-exchange groups a --groups flag accepts, by
// crypto/tls's names; groupAliases maps other common spellings to them.
var groups = []tls.CurveID{
	tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024,
	tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521,
}

var groupAliases = map[string]tls.CurveID{
	"p-256": tls.CurveP256, "p256": tls.CurveP256, "secp256r1": tls.CurveP256, "prime256v1": tls.CurveP256,
	"p-384": tls.CurveP384, "p384": tls.CurveP384, "secp384r1": tls.CurveP384,
	"p-521": tls.CurveP521, "p521": tls.CurveP521, "secp521r1": tls.CurveP521,
}

// GroupNames lists the key-exchange groups a --groups flag accepts, for
// help and errors: crypto/tls's names, but P-256 rather than CurveP256.
func GroupNames() []string {
	var names []string
	for _, g := range groups {
		names = append(names, GroupName(g))
	}
	return names
}

// GroupName is the name GroupNames uses for g.
func GroupName(g tls.CurveID) string {
	return strings.Replace(g.String(), "CurveP", "P-", 1)
}

// ParseGroups parses a comma-separated list of key-exchange groups in
// order of preference (duplicates dropped), e.g. "X25519MLKEM768,X25519".
func ParseGroups(list string) ([]tls.CurveID, error) {
	var ids []tls.CurveID
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		id, ok := groupAliases[strings.ToLower(name)]
		if !ok {
			i := slices.IndexFunc(groups, func(g tls.CurveID) bool { return strings.EqualFold(g.String(), name) })
			if i < 0 {
				return nil, fmt.Errorf("unknown group %q: want %s", name, strings.Join(GroupNames(), ", "))
			}
			id = groups[i]
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// IsHybridGroup reports whether g is a post-quantum hybrid (an ML-KEM key
// exchange combined with a classical one). Hybrids exist only in TLS 1.3: a
// list of nothing else shuts out TLS 1.2 clients.
func IsHybridGroup(g tls.CurveID) bool {
	switch g {
	case tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024:
		return true
	}
	return false
}
