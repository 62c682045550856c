package document

import (
	"bytes"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Marshal writes d as a YAML document that Parse reads back to an equal
// Document (after normalization: empty lists are omitted). Fields keep their
// declaration order and lists of plain strings are written inline
// ([a, b]), which keeps rules on one screen. `mcpctl get -o yaml` prints this.
func Marshal(d *Document) ([]byte, error) {
	if d == nil {
		d = &Document{}
	}
	var n yaml.Node
	if err := n.Encode(d); err != nil {
		return nil, fmt.Errorf("encoding document: %w", err)
	}
	inlineScalarLists(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("encoding document: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding document: %w", err)
	}
	return buf.Bytes(), nil
}

// inlineScalarLists switches sequences of short scalars to flow style.
func inlineScalarLists(n *yaml.Node) {
	if n.Kind == yaml.SequenceNode && len(n.Content) > 0 {
		flow, width := true, 0
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode || c.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
				flow = false
				break
			}
			width += len(c.Value) + 2
		}
		if flow && width <= 100 {
			n.Style = yaml.FlowStyle
			return
		}
	}
	for _, c := range n.Content {
		inlineScalarLists(c)
	}
}
