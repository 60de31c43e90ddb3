// Package hosts reads and edits sc-client's per-host settings file
// (~/.config/space-captain/hosts on Linux: [DefaultPath]), laid out like
// OpenSSH's ssh_config: Host lines with patterns open blocks of
// "key value" settings.
//
//	# the game server
//	Host game
//	    server game.example:4242
//	    pin sha256//PN5c5d1wBtw5Kb6aNSzB/G8y4wXvKbmBDDi7RK1F0lM=
//
//	Host *.test !prod.test
//	    tofu off
//
// Entry points: [Parse] and [ReadFile] read a file into a [File], whose
// [File.Resolve] gives the settings that apply to a name; [AddPins] adds
// pins to a host's block under a lock, with an atomic rewrite that keeps
// every other byte of the file. The package knows the layout, not the
// keys: sc-client checks them against its flags.
package hosts
