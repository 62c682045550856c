//go:build !linux

package e2e_test

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
