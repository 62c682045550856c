package loadgen

import (
	"math/bits"
	"time"
)

// Histogram records durations in log-linear buckets: every power of two is
// split into histSub equal sub-buckets, so a recorded value is known to
// within 1/histSub (1.6%) of itself, from 1 ns up to hours, in a fixed array.
// Recording is two shifts and an increment, cheap enough for the hot loop of
// a load generator. A Histogram is not safe for concurrent use: each session
// owns one and they are merged at the end.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    int64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	// Values of up to 2^histMaxBits ns (about 18 minutes) get their own
	// bucket; larger ones are clamped into the last, which no per-call
	// timeout here comes near.
	histMaxBits = 40
	histBuckets = (histMaxBits - histSubBits + 1) * histSub
)

// bucket maps v ≥ 0 to its bucket index; values below 2·histSub are exact.
func bucket(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	i := (shift+1)<<histSubBits + int(v>>uint(shift)) - histSub
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// bucketHigh is the largest value that maps to bucket i, so percentiles are
// reported pessimistically (never below the true value).
func bucketHigh(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	shift := i>>histSubBits - 1
	m := uint64(i&(histSub-1) + histSub)
	return (m+1)<<uint(shift) - 1
}

// Record adds one observation; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucket(uint64(v))]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

// Merge adds every observation of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest observation, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Quantile returns the smallest bucket bound below or at which a fraction q
// (0..1) of the observations lie, capped at Max; zero when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q < 0 {
		q = 0
	}
	// rank is 1-based: the rank-th smallest observation.
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := int64(bucketHigh(i))
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}
