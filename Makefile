# The two commands of the README's quick start, and a few more.
# Every target sets GOTOOLCHAIN=auto: go.mod asks for go 1.27.3, which the go
# command then fetches through the module proxy if the machine's Go is older.
export GOTOOLCHAIN := auto

.PHONY: run test bench deps build package clean

## run: the server on its defaults (first run makes ./certs and prints the pins)
run:
	go run ./cmd/sc-server

## test: everything the project checks (what CI runs)
test: deps
	scripts/test.sh

## bench: the full benchmark matrix (about 25 minutes); writes docs/BENCHMARKS.md
bench:
	scripts/bench.sh

## deps: the Debian packages the tests use (openssl, Mbed TLS, haproxy, scanners)
deps:
	scripts/deps.sh

## build: the three commands into bin/, with the version from git describe
build:
	go build -ldflags "-X github.com/spacecaptain/spacecaptain/internal/cli.version=$$(scripts/version.sh)" -o bin/ ./cmd/...

## package: .deb and .rpm for linux/amd64 and linux/arm64 into dist/ (nfpm)
package:
	scripts/package.sh --out dist

clean:
	rm -rf bin dist .cache
