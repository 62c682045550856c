package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// RSS returns the resident set size of process pid in bytes, from the
// VmRSS line of /proc/<pid>/status (Linux only).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("reading RSS: %w", err)
	}
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest) // "1234", "kB"
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("reading RSS: odd VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading RSS: %w", err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("reading RSS: no VmRSS in /proc/%d/status", pid)
}
