//go:build !linux

package proctest

import "syscall"

// procAttr: only Linux has a parent-death signal; elsewhere cleanup alone
// stops the children.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
