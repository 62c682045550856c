package upstream

import "syscall"

// procAttr puts the child in its own process group, so signals reach its
// whole tree, and asks the kernel to kill it if the edge dies without a
// chance to clean up.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
