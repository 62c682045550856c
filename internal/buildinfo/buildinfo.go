// Package buildinfo reports the version of the running binary, so that both
// planes and mcpctl can print it and exchange it in Hello and Enroll messages.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version is set at link time (-ldflags "-X github.com/mcpgw/mcpgw/internal/buildinfo.Version=v1.2.3").
// When it is not set, the module version or VCS revision recorded by the Go
// toolchain is used instead, so a `go install`ed binary still reports something useful.
var Version = ""

// String returns a one-line version description, e.g. "v0.1.0 (go1.26.8 linux/amd64)".
func String() string {
	return Get() + " (" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}

// Get returns the bare version string ("devel" when nothing better is known).
func Get() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}
