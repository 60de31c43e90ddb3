package bench

import (
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: values below 1<<subBits ns are
// counted exactly, larger ones in buckets 1/(1<<(subBits-1)) of their
// value wide, so a quantile is off by less than 0.8%. This is the
// log-linear layout of HdrHistogram (Gil Tene's "How NOT to measure
// latency"), small enough to write here.
const subBits = 8

// maxShift bounds the values a histogram holds: 2^(maxShift+subBits) ns is
// about 78 hours. Larger values are counted in the last bucket.
const maxShift = 40

const numBuckets = (maxShift+1)<<(subBits-1) + 1<<(subBits-1)

// histogram counts durations in log-linear buckets. The zero value is not
// usable; make one with newHistogram. It is not safe for concurrent use.
type histogram struct {
	counts   []uint64
	n        uint64
	sum      time.Duration
	min, max time.Duration
}

func newHistogram() *histogram {
	return &histogram{counts: make([]uint64, numBuckets)}
}

func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	s := bits.Len64(v) - subBits
	if s > maxShift {
		return numBuckets - 1
	}
	return s<<(subBits-1) + int(v>>s)
}

// bucketValue returns the middle of bucket i's range.
func bucketValue(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	s := i>>(subBits-1) - 1
	mantissa := uint64(i - s<<(subBits-1))
	return mantissa<<s + (1<<s)/2
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += d
}

func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// quantile returns the value at quantile q (0 < q ≤ 1): the smallest
// recorded value that at least q of the values do not exceed, to the
// histogram's precision, clamped to the exact minimum and maximum.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return min(max(time.Duration(bucketValue(i)), h.min), h.max)
		}
	}
	return h.max
}

func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Histogram is a distribution of durations to about 1% (the log-linear
// layout described at subBits), for load generators that keep their own
// windows of latencies, as the soak does. The zero value is not usable:
// make one with [NewHistogram]. It is not safe for concurrent use.
type Histogram struct{ h *histogram }

// NewHistogram returns an empty Histogram.
func NewHistogram() *Histogram { return &Histogram{h: newHistogram()} }

// Record adds d; a negative d counts as 0.
func (h *Histogram) Record(d time.Duration) { h.h.record(d) }

// Merge adds every value of o to h.
func (h *Histogram) Merge(o *Histogram) { h.h.merge(o.h) }

// Count returns how many values h holds.
func (h *Histogram) Count() uint64 { return h.h.n }

// Quantile returns the value at quantile q (0 < q ≤ 1), 0 for an empty
// histogram.
func (h *Histogram) Quantile(q float64) time.Duration { return h.h.quantile(q) }

// Max returns the largest value recorded, exactly; 0 for none.
func (h *Histogram) Max() time.Duration { return h.h.max }
