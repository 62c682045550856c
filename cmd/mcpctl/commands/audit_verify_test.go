package commands

import (
	"bytes"
	"strings"
	"testing"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// A pruned prefix is said in the table, and only where there is one.
func TestPrintVerifyPruned(t *testing.T) {
	r := &mcpgwv1.VerifyAuditResponse{Complete: true, Reports: []*mcpgwv1.AuditChainReport{{
		NodeId: "edge-1", Complete: true,
		Epochs: []*mcpgwv1.AuditEpochReport{
			{Epoch: 1, FirstSeq: 1, LastSeq: 900, Batches: 900, LedgerEvents: 900, StoredEvents: 100, ExpiredEvents: 800, Complete: true, PrunedThroughSeq: 800, PrunedBatches: 800},
			{Epoch: 2, FirstSeq: 1, LastSeq: 10, Batches: 10, LedgerEvents: 10, StoredEvents: 10, Complete: true},
		},
	}}}
	var b bytes.Buffer
	printVerify(&b, r)
	out := b.String()
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || !strings.Contains(lines[1], "complete (ledger rows 1-800 pruned by retention: 800 batches kept as a summary)") {
		t.Errorf("epoch 1 does not say what was pruned:\n%s", out)
	}
	if strings.Contains(lines[2], "pruned") {
		t.Errorf("epoch 2 was not pruned:\n%s", out)
	}
	if !strings.Contains(out, "the chain is complete") {
		t.Errorf("no verdict:\n%s", out)
	}
}
