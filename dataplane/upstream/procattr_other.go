//go:build unix && !linux

package upstream

import "syscall"

// procAttr puts the child in its own process group, so signals reach its
// whole tree.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
