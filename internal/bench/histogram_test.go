package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsAreMonotonic(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<22; v += 1 + v/300 {
		b := bucketOf(v)
		if b < prev {
			t.Fatalf("bucketOf(%d) = %d, below bucketOf of a smaller value (%d)", v, b, prev)
		}
		if b >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, want < %d", v, b, numBuckets)
		}
		prev = b
		mid := bucketValue(b)
		if rel := float64(max(mid, v)-min(mid, v)) / float64(max(v, 1)); v >= 1<<subBits && rel > 1.0/(1<<(subBits-1)) {
			t.Fatalf("value %d is in a bucket whose middle is %d: %.2f%% off", v, mid, 100*rel)
		}
	}
	if got := bucketOf(1 << 62); got != numBuckets-1 {
		t.Errorf("bucketOf(2^62) = %d, want the last bucket %d", got, numBuckets-1)
	}
}

func TestQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := newHistogram()
	var vals []time.Duration
	for range 100_000 {
		// Log-normal-ish: most around 50 µs, a tail to tens of ms.
		d := time.Duration(20_000 + rng.ExpFloat64()*40_000)
		if rng.IntN(1000) == 0 {
			d *= 500
		}
		vals = append(vals, d)
		h.record(d)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := vals[int(q*float64(len(vals))+0.999999)-1]
		got := h.quantile(q)
		if rel := float64(max(got, want)-min(got, want)) / float64(want); rel > 0.01 {
			t.Errorf("quantile(%v) = %v, want %v within 1%% (off by %.2f%%)", q, got, want, 100*rel)
		}
	}
	if h.max != vals[len(vals)-1] || h.min != vals[0] {
		t.Errorf("min/max = %v/%v, want %v/%v", h.min, h.max, vals[0], vals[len(vals)-1])
	}
	// Merging two halves gives the same histogram as one.
	a, b := newHistogram(), newHistogram()
	for i, v := range vals {
		if i%2 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
	}
	a.merge(b)
	if a.n != h.n || a.sum != h.sum || !slices.Equal(a.counts, h.counts) {
		t.Error("merged halves differ from the whole")
	}
}
