//go:build linux

package proctest

import "syscall"

// procAttr makes a child die with the test binary, so a test that is
// killed leaves no control plane or edge running.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
