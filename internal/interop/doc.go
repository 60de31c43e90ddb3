// Package interop holds tests that build the real Space Captain binaries
// and run them against other implementations on this machine: OpenSSL
// today, and (as sc-server and sc-client land) other TLS clients and
// servers. It has no code of its own outside tests.
//
// TestMain (main_test.go) builds the binaries listed in its binaries
// variable once into a temporary directory; tests get their paths from
// bin(t, "sc-cert"). A test that needs a tool uses needTool(t, "openssl"),
// which skips with a clear message when the tool is missing — except under
// CI=true, where a missing tool fails the test, so CI cannot pass by
// skipping. To add sc-server or sc-client interop tests, add the command
// to binaries and write a new _test.go file here.
package interop
