package commands

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// outputFlag is -o/--output restricted to the formats a command supports.
type outputFlag struct {
	value   string
	allowed []string
}

func addOutputFlag(c *cobra.Command, def string, allowed ...string) *outputFlag {
	o := &outputFlag{value: def, allowed: allowed}
	c.Flags().VarP(o, "output", "o", "output format: "+strings.Join(allowed, "|"))
	_ = c.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return allowed, cobra.ShellCompDirectiveNoFileComp
	})
	return o
}

func (o *outputFlag) String() string { return o.value }
func (o *outputFlag) Type() string   { return "format" }
func (o *outputFlag) Set(v string) error {
	if !slices.Contains(o.allowed, v) {
		return fmt.Errorf("unknown output format %q (want %s)", v, strings.Join(o.allowed, ", "))
	}
	o.value = v
	return nil
}

// jsonOptions spell JSON keys as the proto field names, which are also the
// audit_events column names (docs/api.md, "JSON").
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true}

// protoJSON returns m as compact JSON. protojson deliberately varies its
// whitespace between builds so nobody depends on it; compacting makes the
// bytes stable for scripts and golden files.
func protoJSON(m proto.Message, emitUnpopulated bool) ([]byte, error) {
	opts := jsonOptions
	opts.EmitUnpopulated = emitUnpopulated
	b, err := opts.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}
	return buf.Bytes(), nil
}

// writeJSON prints m as indented JSON followed by a newline.
func writeJSON(w io.Writer, m proto.Message) error {
	b, err := protoJSON(m, false)
	if err != nil {
		return err
	}
	return writeIndented(w, b)
}

func writeIndented(w io.Writer, compact []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, compact, "", "  "); err != nil {
		return fmt.Errorf("encoding JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// writePlainJSON prints v (a plain Go value with json tags) as indented
// JSON, for the small shapes the create commands promise scripts.
func writePlainJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding JSON: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeProtoYAML prints m as YAML with proto field names, in field order.
// It goes through JSON so the field names and value spellings are exactly
// those of -o json.
func writeProtoYAML(w io.Writer, m proto.Message) error {
	b, err := protoJSON(m, false)
	if err != nil {
		return err
	}
	return writeJSONAsYAML(w, b)
}

func writeJSONAsYAML(w io.Writer, jsonBytes []byte) error {
	var n yaml.Node
	if err := yaml.Unmarshal(jsonBytes, &n); err != nil {
		return fmt.Errorf("encoding YAML: %w", err)
	}
	blockStyle(&n)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return fmt.Errorf("encoding YAML: %w", err)
	}
	return enc.Close()
}

// blockStyle undoes the flow style YAML keeps from JSON input, so the
// output reads like hand-written YAML. Strings keep the quotes JSON gave
// them only where YAML needs them.
func blockStyle(n *yaml.Node) {
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		n.Style = 0
	}
	if n.Kind == yaml.ScalarNode && n.Style == yaml.DoubleQuotedStyle {
		n.Style = 0
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// table writes aligned columns in the style of kubectl get.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)}
	t.row(headers...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// timeText renders a timestamp for describe and wide output: UTC, to the
// second, or "-" when unset.
func timeText(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// ageText renders how long ago ts was, or "" when unset.
func (g *globals) ageText(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return g.age(ts.AsTime())
}

// untilText renders how far in the future ts is ("in 89d"), or "never"
// when unset.
func (g *globals) untilText(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "never"
	}
	return g.until(ts.AsTime())
}

// untilNow is the production env.until.
func untilNow(t time.Time) string {
	return untilText(time.Until(t))
}

// untilText renders the time left, rounded up to the unit humanAge shows,
// so a key made with --expires 90d lists as "in 90d", not "in 89d" a
// second later.
func untilText(d time.Duration) string {
	if d <= 0 {
		return "expired"
	}
	unit := time.Second
	switch {
	case d >= 48*time.Hour:
		unit = 24 * time.Hour
	case d >= 8*time.Hour:
		unit = time.Hour
	case d >= 10*time.Minute:
		unit = time.Minute
	}
	if r := d % unit; r != 0 {
		d += unit - r
	}
	return "in " + humanAge(d)
}

func joinOr(vs []string, empty string) string {
	if len(vs) == 0 {
		return empty
	}
	return strings.Join(vs, ",")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
