package commands

import (
	"io"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/docproto"
	"github.com/mcpgw/mcpgw/internal/document"
)

// writeDocumentYAML prints a wire document as the declarative YAML that
// apply -f reads back (document.Marshal, the same shape standalone edges
// read), so get -o yaml output can be edited and applied.
func writeDocumentYAML(w io.Writer, pd *mcpgwv1.PolicyDocument) error {
	d := docproto.DocumentFromProto(pd)
	b, err := document.Marshal(&d)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
