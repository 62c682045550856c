package dataplane

import (
	"os"
	"runtime/debug"
)

// GCPercent is the edge's garbage-collection target (GOGC) unless the
// operator sets GOGC. An edge's live heap is small (1–3 MB: the catalog,
// the policy, sessions) while every call allocates a few KB, so at Go's
// default of 100 the heap goal sits at its 4 MB floor and the collector
// ran once every ~200 calls (GC and malloc were ~15% of the edge's CPU;
// docs/benchmarks.md, "Garbage collection"). At 200 the goal is 8 MB and
// it runs a third as often, for about 4 MB more heap at 64 busy sessions;
// idle memory does not change, and the heap stays within 3× the live heap.
const GCPercent = 200

// ApplyGCDefault sets GCPercent as the process's GC target unless GOGC is
// set in the environment (the runtime has applied that), and reports
// whether it did. It is for a process whose job is the edge (`mcpgw edge`,
// `mcpgw-edge`, the benchmarks' edge process): the setting is process-wide,
// so Run, which also runs inside tests and `mcpgw dev`, does not make it.
func ApplyGCDefault() bool {
	if os.Getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(GCPercent)
	return true
}
