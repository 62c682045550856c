package ingest

import (
	"context"
	"errors"
	"time"

	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// commitReq is one stream's contiguous pending batches, handed to a
// committer. A stream has at most one in flight, so a node's batches commit
// in seq order and each chain check sees the batch before it committed.
type commitReq struct {
	node    string
	batches []auditdb.Batch
	events  int
	// done receives exactly one result; buffered so a committer never
	// waits on a stream that went away.
	done chan commitResult
}

type commitResult struct {
	res     auditdb.Result
	err     error
	latency time.Duration
}

// commitLoop takes requests, lingers briefly for other streams' requests to
// share the transaction, and commits them together.
func (s *Server) commitLoop(ctx context.Context) error {
	var group []*commitReq
	for {
		group = group[:0]
		var first *commitReq
		select {
		case <-ctx.Done():
			return nil
		case first = <-s.reqs:
		}
		group = append(group, first)
		events, batches := first.events, len(first.batches)
		linger := time.NewTimer(s.cfg.Linger)
	collect:
		for events < s.cfg.MaxEvents && batches < s.cfg.MaxBatches {
			select {
			case r := <-s.reqs:
				group = append(group, r)
				events += r.events
				batches += len(r.batches)
			case <-linger.C:
				break collect
			case <-ctx.Done():
				break collect
			}
		}
		linger.Stop()
		s.commit(ctx, group)
	}
}

// commit stores a group in one transaction and answers every request. A
// conflict (a forged batch under a stored seq) fails the whole transaction;
// the requests are then committed one by one so only the offender fails.
func (s *Server) commit(ctx context.Context, group []*commitReq) {
	// Streams must hear back even while the server stops: a request that
	// was taken is answered.
	ctx = context.WithoutCancel(ctx)
	res, lat, err := s.ingest(ctx, group)
	if err != nil && errors.Is(err, auditdb.ErrConflict) && len(group) > 1 {
		for _, r := range group {
			res, lat, err := s.ingest(ctx, []*commitReq{r})
			r.done <- commitResult{res: res, err: err, latency: lat}
		}
		return
	}
	for _, r := range group {
		// The aggregate result is reported to each stream; streams look up
		// their own batches' flags only when it says something was flagged.
		r.done <- commitResult{res: res, err: err, latency: lat}
	}
}

func (s *Server) ingest(ctx context.Context, group []*commitReq) (auditdb.Result, time.Duration, error) {
	groups := make([]auditdb.NodeBatches, len(group))
	for i, r := range group {
		groups[i] = auditdb.NodeBatches{Node: r.node, Batches: r.batches}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CommitTimeout)
	defer cancel()
	start := time.Now()
	res, err := s.cfg.Store.IngestAll(ctx, groups...)
	lat := time.Since(start)
	if err != nil {
		s.stats.commitErrors.Add(1)
		s.metrics.commitErrors.Inc()
		return res, lat, err
	}
	s.metrics.commitSeconds.Observe(lat.Seconds())
	s.stats.commits.Add(1)
	s.stats.batches.Add(int64(res.Batches))
	s.stats.duplicates.Add(int64(res.Duplicates))
	s.stats.events.Add(int64(res.Events))
	s.stats.chainBreaks.Add(int64(res.ChainBreaks))
	s.stats.crcFailures.Add(int64(res.CRCFailures))
	s.stats.rejected.Add(int64(res.Rejected))
	s.metrics.batches.Add(float64(res.Batches))
	s.metrics.duplicates.Add(float64(res.Duplicates))
	s.metrics.events.Add(float64(res.Events))
	s.metrics.chainBreaks.Add(float64(res.ChainBreaks))
	s.metrics.crcFailures.Add(float64(res.CRCFailures))
	s.metrics.rejected.Add(float64(res.Rejected))
	if s.cfg.OnCommit != nil {
		s.cfg.OnCommit(lat, res)
	}
	return res, lat, nil
}

// Ingest commits one node's batches through the coalescer, as a stream
// would, and waits for the result. For benchmarks and tools that feed
// batches without a stream; Run must be running.
func (s *Server) Ingest(ctx context.Context, node string, batches []auditdb.Batch) (auditdb.Result, error) {
	r := &commitReq{node: node, batches: batches, done: make(chan commitResult, 1)}
	for i := range batches {
		r.events += batches[i].Count
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return auditdb.Result{}, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res.res, res.err
	case <-ctx.Done():
		return auditdb.Result{}, ctx.Err()
	}
}
