package soak

import (
	"encoding/csv"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// Sample is what the run saw in one sampling window: the server's state at
// its end and the clients' figures over it. Latencies are in milliseconds;
// counts marked "in the window" restart at every sample.
type Sample struct {
	// T is the sample's time in seconds since the server started serving.
	T float64 `csv:"t_s" json:"t_s"`
	// Held is the number of held connections open.
	Held int `csv:"held_conns" json:"held_conns"`

	// The server process: resident memory (/proc), heap in use, goroutines
	// (its /metrics), open descriptors (/proc), GC cycles and their total
	// pause in the window, the longest of its last 256 pauses, and its CPU
	// seconds in the window.
	RSS          int64   `csv:"rss_bytes" json:"rss_bytes"`
	HeapInuse    int64   `csv:"heap_inuse_bytes" json:"heap_inuse_bytes"`
	Goroutines   int     `csv:"goroutines" json:"goroutines"`
	FDs          int     `csv:"open_fds" json:"open_fds"`
	GCCycles     int64   `csv:"gc_cycles" json:"gc_cycles"`
	GCPauseMs    float64 `csv:"gc_pause_total_ms" json:"gc_pause_total_ms"`
	GCPauseMaxMs float64 `csv:"gc_pause_max_recent_ms" json:"gc_pause_max_recent_ms"`
	CPU          float64 `csv:"server_cpu_s" json:"server_cpu_s"`

	// The held connections' heartbeat ECHOs in the window.
	HBCount int64   `csv:"hb_count" json:"hb_count"`
	HBP50   float64 `csv:"hb_p50_ms" json:"hb_p50_ms"`
	HBP99   float64 `csv:"hb_p99_ms" json:"hb_p99_ms"`
	HBMax   float64 `csv:"hb_max_ms" json:"hb_max_ms"`
	// The ping-pong ECHOs in the window.
	PPCount int64   `csv:"pp_count" json:"pp_count"`
	PPP99   float64 `csv:"pp_p99_ms" json:"pp_p99_ms"`
	// The new connections in the window: dial, handshake, KEYS for a
	// player, one ECHO.
	NewCount int64   `csv:"new_conns" json:"new_conns"`
	NewP99   float64 `csv:"new_p99_ms" json:"new_p99_ms"`

	// Client failures in the window: failed handshakes and requests, held
	// connections reopened, and handshakes refused because the key was
	// not one the client trusted (lockouts, also counted in Errors).
	Errors     int64 `csv:"errors" json:"errors"`
	Reconnects int64 `csv:"reconnects" json:"reconnects"`
	Lockouts   int64 `csv:"lockouts" json:"lockouts"`
	// Rotations counts the rotations done so far.
	Rotations int `csv:"rotations" json:"rotations"`
}

// csvColumns are the CSV header's names, in field order.
func csvColumns() []string {
	t := reflect.TypeFor[Sample]()
	cols := make([]string, t.NumField())
	for i := range cols {
		cols[i] = t.Field(i).Tag.Get("csv")
	}
	return cols
}

// WriteCSVHeader writes the header line of the samples' CSV.
func WriteCSVHeader(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(csvColumns())
	cw.Flush()
	return cw.Error()
}

// WriteCSV writes s as one CSV line, in the header's order.
func (s Sample) WriteCSV(w io.Writer) error {
	v := reflect.ValueOf(s)
	rec := make([]string, v.NumField())
	for i := range rec {
		switch f := v.Field(i); f.Kind() {
		case reflect.Float64:
			rec[i] = strconv.FormatFloat(f.Float(), 'f', -1, 64)
		default:
			rec[i] = fmt.Sprint(f.Interface())
		}
	}
	cw := csv.NewWriter(w)
	_ = cw.Write(rec)
	cw.Flush()
	return cw.Error()
}

// ReadCSV reads the samples written by [WriteCSVHeader] and
// [Sample.WriteCSV]. The header must have this version's columns, in any
// order; it names the line and column of any value it cannot read.
func ReadCSV(r io.Reader) ([]Sample, error) {
	cr := csv.NewReader(r)
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("reading the samples' header: %w", err)
	}
	want := csvColumns()
	index := map[string]int{}
	for i, name := range header {
		index[name] = i
	}
	var missing []string
	for _, name := range want {
		if _, ok := index[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the samples' header lacks %s: not a soak CSV of this version", strings.Join(missing, ", "))
	}
	var out []Sample
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the samples: %w", err)
		}
		var s Sample
		v := reflect.ValueOf(&s).Elem()
		for i, name := range want {
			text := rec[index[name]]
			f := v.Field(i)
			switch f.Kind() {
			case reflect.Float64:
				x, err := strconv.ParseFloat(text, 64)
				if err != nil {
					return nil, fmt.Errorf("line %d, column %s: %q is not a number", line, name, text)
				}
				f.SetFloat(x)
			default:
				x, err := strconv.ParseInt(text, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("line %d, column %s: %q is not a whole number", line, name, text)
				}
				f.SetInt(x)
			}
		}
		out = append(out, s)
	}
}
