package auditlog

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// PostgresSink writes batches into audit_events through internal/auditdb,
// for a standalone edge with audit.postgres_url. Ingest is exactly-once by
// (node, epoch, seq), so the Log's retries after an outage store every batch
// once. While Postgres is unreachable the batches wait in the spool; the Log
// reports the sink unhealthy with the error, and the edge keeps serving.
type PostgresSink struct {
	store   *auditdb.Store
	node    string
	timeout time.Duration
}

// NewPostgresSink returns a sink ingesting as node (the edge's node UUID,
// which its events must carry) into store.
func NewPostgresSink(store *auditdb.Store, node string) (*PostgresSink, error) {
	id, err := uuid.Parse(node)
	if err != nil {
		return nil, fmt.Errorf("audit postgres sink: node id %q is not a UUID: %w", node, err)
	}
	return &PostgresSink{store: store, node: id.String(), timeout: 30 * time.Second}, nil
}

// Name implements Sink.
func (p *PostgresSink) Name() string { return "postgres" }

// MaxDelivery implements DeliveryLimiter: a low-traffic sync edge seals a
// batch per event, and one transaction per few batches would make
// catching up after an outage slow; a thousand batches share a commit.
func (p *PostgresSink) MaxDelivery() (batches, bytes int) { return 1024, 16 << 20 }

// Deliver implements Sink: all the batches in one transaction.
func (p *PostgresSink) Deliver(ctx context.Context, batches []SealedBatch) error {
	// A hung connection must not stall the sink forever: the attempt is
	// bounded and retried.
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	bs := make([]auditdb.Batch, len(batches))
	for i := range batches {
		bs[i] = batches[i].Batch // CRC was set from the spooled bytes
	}
	if _, err := p.store.Ingest(ctx, p.node, bs...); err != nil {
		return fmt.Errorf("writing audit batches %d..%d to postgres: %w", batches[0].Seq, batches[len(batches)-1].Seq, err)
	}
	return nil
}
