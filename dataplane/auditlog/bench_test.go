package auditlog

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
)

// BenchmarkRecord measures what Record costs a request, per durability mode
// and number of concurrent emitters, with a real spool and file sink.
// Reported: ns/op per event, spool writes per event (group commit), and how
// many async events were refused because the writer fell behind.
func BenchmarkRecord(b *testing.B) {
	for _, mode := range []Durability{DurabilitySync, DurabilityAsync} {
		for _, emitters := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/emitters=%d", mode, emitters), func(b *testing.B) {
				sink, err := NewFileSink(filepath.Join(b.TempDir(), "audit.jsonl"), 0, 0)
				if err != nil {
					b.Fatal(err)
				}
				l, err := Open(Config{Dir: b.TempDir(), Durability: mode, MaxBytes: 4 << 30, Logger: quietLogger()}, sink)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- l.Run(ctx) }()
				defer func() { cancel(); <-done }()
				ev := testEvent(1)
				var refused atomic.Int64
				record := func() {
					if err := l.Record(context.Background(), ev); err != nil {
						if !errors.Is(err, ErrAuditUnavailable) {
							b.Error(err)
						}
						refused.Add(1)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				if emitters == 1 {
					for range b.N {
						record()
					}
				} else {
					b.SetParallelism((emitters + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							record()
						}
					})
				}
				b.StopTimer()
				st := l.Stats()
				b.ReportMetric(float64(st.Writes)/float64(b.N), "writes/event")
				b.ReportMetric(float64(refused.Load())/float64(b.N), "refused/event")
			})
		}
	}
}

// BenchmarkEnqueue compares the ring Record uses with a buffered channel,
// with 64 concurrent producers and one consumer draining.
func BenchmarkEnqueue(b *testing.B) {
	par := (64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)
	b.Run("ring", func(b *testing.B) {
		r := newRing(8192)
		stop := make(chan struct{})
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			for {
				if _, ok := r.pop(); !ok {
					select {
					case <-stop:
						return
					default:
						runtime.Gosched()
					}
				}
			}
		}()
		buf := make([]byte, 10)
		b.SetParallelism(par)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				for !r.push(entry{buf: &buf}) {
					runtime.Gosched()
				}
			}
		})
		close(stop)
		<-drained
	})
	b.Run("channel", func(b *testing.B) {
		ch := make(chan entry, 8192)
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			for range ch {
			}
		}()
		buf := make([]byte, 10)
		b.SetParallelism(par)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				ch <- entry{buf: &buf}
			}
		})
		close(ch)
		<-drained
	})
}

// BenchmarkRecordHotPath is what an async Record costs the request itself:
// validate, encode into a pooled buffer, enqueue. The writer is replaced by
// a goroutine that only drains the queue and recycles buffers, so the figure
// excludes disk and sink work (which BenchmarkRecord includes).
func BenchmarkRecordHotPath(b *testing.B) {
	for _, emitters := range []int{1, 64} {
		b.Run(fmt.Sprintf("emitters=%d", emitters), func(b *testing.B) {
			sink, _ := NewFileSink(filepath.Join(b.TempDir(), "audit.jsonl"), 0, 0)
			l, err := Open(Config{Dir: b.TempDir(), Durability: DurabilityAsync, Logger: quietLogger()}, sink)
			if err != nil {
				b.Fatal(err)
			}
			var stop atomic.Bool
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				for !stop.Load() {
					if e, ok := l.q.pop(); ok {
						l.bufs.Put(e.buf)
					} else {
						runtime.Gosched()
					}
				}
			}()
			ev := testEvent(1)
			var refused atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.SetParallelism((emitters + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			run := func() {
				if err := l.Record(context.Background(), ev); err != nil {
					refused.Add(1)
				}
			}
			if emitters == 1 {
				for range b.N {
					run()
				}
			} else {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						run()
					}
				})
			}
			b.StopTimer()
			stop.Store(true)
			<-drained
			b.ReportMetric(float64(refused.Load())/float64(b.N), "refused/event")
		})
	}
}
