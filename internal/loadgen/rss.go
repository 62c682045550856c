package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// RSS returns the resident set size of process pid in bytes, from the
// VmRSS line of /proc/<pid>/status (Linux only).
func RSS(pid int) (int64, error) { return procStatus(pid, "VmRSS") }

// RSSAnon returns the anonymous part of the resident set (heap, stacks:
// memory the process itself owns), from RssAnon in /proc/<pid>/status. The
// rest of RSS is file-backed, mostly the pages of the executable it has
// touched, which the page cache shares between processes of the same
// binary.
func RSSAnon(pid int) (int64, error) { return procStatus(pid, "RssAnon") }

// procStatus reads a "Key:  N kB" line of /proc/<pid>/status, in bytes.
func procStatus(pid int, key string) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", key, err)
	}
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte(key+":"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest) // "1234", "kB"
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("reading %s: odd line %q", key, line)
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading %s: %w", key, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("reading %s: not in /proc/%d/status", key, pid)
}

// clockTicks is USER_HZ, the unit of the times in /proc/<pid>/stat; it is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// CPUTime returns the user plus system CPU time process pid has used, all
// threads together, from /proc/<pid>/stat (Linux only; 10 ms resolution).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("reading CPU time: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// the fields after it start at state (field 3).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("reading CPU time: odd /proc/%d/stat", pid)
	}
	f := bytes.Fields(b[i+1:])
	// utime and stime are fields 14 and 15, so 11 and 12 after state.
	if len(f) < 13 {
		return 0, fmt.Errorf("reading CPU time: short /proc/%d/stat", pid)
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading CPU time: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
