package cli

import "os"

// The environment variables that name the configuration files the
// commands read. Set and empty, each means "no file".
const (
	// ServerConfigEnv names sc-server's configuration file (--config).
	ServerConfigEnv = "SC_SERVER_CONFIG"
	// HostsFileEnv names sc-client's hosts file (--hosts-file), which
	// sc-cert pin add --to hosts also edits.
	HostsFileEnv = "SC_CLIENT_HOSTS_FILE"
	// IdentityEnv names sc-client's default identity (the key it presents
	// when a server asks for a client certificate and --identity does not
	// name one); set and empty, none is presented.
	IdentityEnv = "SC_CLIENT_IDENTITY"
)

// NoConfigFiles sets [ServerConfigEnv], [HostsFileEnv] and [IdentityEnv] empty in this
// process's environment, so that the commands it runs in process, and
// every program it starts, read no configuration file: not the
// /etc/space-captain/sc-server.toml a package installed, not the user's
// hosts file. It is the one way tests say "no configuration file": every
// test package that runs the commands calls it first in TestMain. It
// returns the first error of os.Setenv.
func NoConfigFiles() error {
	for _, v := range []string{ServerConfigEnv, HostsFileEnv, IdentityEnv} {
		if err := os.Setenv(v, ""); err != nil {
			return err
		}
	}
	return nil
}
