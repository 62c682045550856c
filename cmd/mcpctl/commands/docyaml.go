package commands

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/docproto"
	"github.com/mcpgw/mcpgw/internal/document"
)

// parseInputs parses and merges the documents of every input.
// TODO(mcpctl): switch to document.Parse/ParseFiles when they land; this
// strict decode is a stand-in with the same shape.
func parseInputs(inputs []docInput) (*document.Document, error) {
	var merged document.Document
	for _, in := range inputs {
		r := in.r
		if r == nil {
			b, err := os.ReadFile(in.name)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", in.name, unwrapPathError(err))
			}
			r = bytes.NewReader(b)
		}
		dec := yaml.NewDecoder(r)
		dec.KnownFields(true)
		for {
			var d document.Document
			err := dec.Decode(&d)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", in.name, err)
			}
			merged.Backends = append(merged.Backends, d.Backends...)
			merged.Roles = append(merged.Roles, d.Roles...)
			merged.Bindings = append(merged.Bindings, d.Bindings...)
			merged.Principals = append(merged.Principals, d.Principals...)
			if d.Auth != nil {
				merged.Auth = d.Auth
			}
			if d.Audit != nil {
				merged.Audit = d.Audit
			}
		}
	}
	return &merged, nil
}

// writeDocumentYAML prints a wire document as the declarative YAML that
// apply -f reads back.
func writeDocumentYAML(w io.Writer, pd *mcpgwv1.PolicyDocument) error {
	d := docproto.DocumentFromProto(pd)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&d); err != nil {
		return fmt.Errorf("encoding YAML: %w", err)
	}
	return enc.Close()
}
