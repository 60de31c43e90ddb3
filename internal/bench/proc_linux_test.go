package bench

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name, stat string
		want       time.Duration
		wantErr    bool
	}{
		// Fields 14 and 15 (utime 250, stime 30) after a name with
		// spaces and parentheses.
		{"name with parens", "1234 (sc server) (x)) S 1 1234 1234 0 -1 4194560 5000 0 0 0 250 30 0 0 20 0 9 0 100 1000000 500 18446744073709551615", 2800 * time.Millisecond, false},
		{"plain", "1 (init) S 0 1 1 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 100 50", 100 * time.Millisecond, false},
		{"no name", "1 init S 0", 0, true},
		{"short", "1 (init) S 0 1 1", 0, true},
		{"not a number", "1 (init) S 0 1 1 0 -1 4194560 100 0 0 0 x 3 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.stat))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseStatusRSS(t *testing.T) {
	tests := []struct {
		name, status string
		want         int64
		wantErr      bool
	}{
		{"normal", "Name:\tsc-server\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\nRssAnon:\t 100 kB\n", 4321 << 10, false},
		{"zombie", "Name:\tsc-server\nState:\tZ (zombie)\n", 0, true},
		{"bad unit", "VmRSS:\t 12 MB\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatusRSS([]byte(tt.status))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestReadProcSelf(t *testing.T) {
	before, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn some CPU and memory, and see both counted.
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	deadline := time.Now().Add(5 * time.Second)
	after := before
	for after.CPU <= before.CPU && time.Now().Before(deadline) {
		for i := range buf {
			buf[i] ^= byte(i >> 3)
		}
		if after, err = ReadProc(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if after.CPU <= before.CPU {
		t.Errorf("CPU time went from %v to %v, want it to grow", before.CPU, after.CPU)
	}
	if after.RSS < 64<<20 {
		t.Errorf("RSS %d bytes with 64 MiB touched, want more", after.RSS)
	}
	// Ten more open files are ten more descriptors.
	var files []*os.File
	for range 10 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	opened, err := ReadProc(os.Getpid())
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if opened.FDs-after.FDs != 10 {
		t.Errorf("open descriptors went from %d to %d with 10 files opened, want +10", after.FDs, opened.FDs)
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Error("ReadProc of a process that does not exist succeeded")
	}
}
