//go:build !race

package servercmd

const raceEnabled = false
