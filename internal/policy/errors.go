package policy

import (
	"fmt"
	"strings"
)

// FieldError is one problem in a spec, located by a path such as
// `roles[2] "developer": rules[1].tools[0]`. The control plane maps these to
// per-resource admin errors and NACK details, so Path names the resource first.
type FieldError struct {
	Path string
	Msg  string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// CompileError lists every problem Compile found, in spec order, so an
// operator fixes a document in one round instead of one error per apply.
type CompileError struct {
	Errors []FieldError
}

func (e *CompileError) Error() string {
	switch len(e.Errors) {
	case 0:
		return "invalid policy"
	case 1:
		return "invalid policy: " + e.Errors[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid policy (%d errors):", len(e.Errors))
	for _, fe := range e.Errors {
		b.WriteString("\n  ")
		b.WriteString(fe.Error())
	}
	return b.String()
}

// errorList collects FieldErrors while compiling.
type errorList []FieldError

func (l *errorList) add(path, format string, args ...any) {
	*l = append(*l, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}
