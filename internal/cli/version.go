package cli

// version is the release the binary was built as, set by the build:
//
//	go build -ldflags "-X github.com/spacecaptain/spacecaptain/internal/cli.version=1.2.3" ./cmd/...
//
// make build and make package set it from git describe
// (scripts/version.sh), so that sc-server --version matches the version of
// the .deb or .rpm it came in. Empty means unset: [Version] then falls back
// to the build info. It is a variable only because -X can set nothing else;
// nothing assigns it at run time.
var version string

// VersionLDFlag is the -ldflags -X argument that sets [Version]'s answer.
const VersionLDFlag = "github.com/spacecaptain/spacecaptain/internal/cli.version"
