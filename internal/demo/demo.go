// Package demo is the MCP server behind `mcpgw demo-backend`: a few small,
// genuinely useful tools, one prompt and one resource, so that `mcpgw dev`
// has something real to put behind the edge without anything installed.
// It is built on the official Go SDK; it is a backend, not the hot path.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/internal/buildinfo"
)

// Names of what the server offers; mcpgw dev's default policy and its tests
// refer to them.
const (
	ServerName    = "mcpgw-demo"
	ToolEcho      = "echo"
	ToolAdd       = "add"
	ToolTimeNow   = "time_now"
	ToolWordCount = "word_count"
	PromptName    = "summarize"
	ReadmeURI     = "demo://readme"
)

// Tools lists the tool names, in the order the server registers them.
var Tools = []string{ToolEcho, ToolAdd, ToolTimeNow, ToolWordCount}

// Options configure the server. The zero value is ready to use.
type Options struct {
	// Now is the clock time_now reads (default time.Now).
	Now func() time.Time
}

// NewServer returns the demo MCP server, ready to Run on a transport.
func NewServer(opts Options) *mcp.Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := mcp.NewServer(&mcp.Implementation{Name: ServerName, Title: "mcpgw demo backend", Version: buildinfo.Get()},
		&mcp.ServerOptions{Instructions: "Demo tools for trying mcpgw: echo text, add numbers, tell the time in a zone, count words."})

	mcp.AddTool(s, &mcp.Tool{Name: ToolEcho, Title: "Echo", Description: "Returns the text it is given, unchanged."}, echo)
	mcp.AddTool(s, &mcp.Tool{Name: ToolAdd, Title: "Add numbers", Description: "Adds a list of numbers and returns the sum."}, add)
	mcp.AddTool(s, &mcp.Tool{Name: ToolTimeNow, Title: "Current time", Description: "The current time in an IANA time zone (e.g. Europe/Paris; default UTC), as RFC 3339."},
		func(ctx context.Context, req *mcp.CallToolRequest, in timeIn) (*mcp.CallToolResult, timeOut, error) {
			return timeNow(opts.Now, in)
		})
	mcp.AddTool(s, &mcp.Tool{Name: ToolWordCount, Title: "Word count", Description: "Counts the words, lines and characters of a text."}, wordCount)

	s.AddPrompt(&mcp.Prompt{
		Name:        PromptName,
		Title:       "Summarize",
		Description: "Asks the model for a short summary of a text.",
		Arguments: []*mcp.PromptArgument{
			{Name: "text", Description: "the text to summarize", Required: true},
			{Name: "sentences", Description: "how many sentences the summary may have (default 3)"},
		},
	}, summarize)

	s.AddResource(&mcp.Resource{
		URI:         ReadmeURI,
		Name:        "readme",
		Title:       "About the demo backend",
		Description: "What this demo backend offers and how mcpgw dev uses it.",
		MIMEType:    "text/markdown",
		Size:        int64(len(readme)),
	}, func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: ReadmeURI, MIMEType: "text/markdown", Text: readme}}}, nil
	})
	return s
}

// Serve runs the server on r and w (stdin and stdout for a stdio backend)
// until the client closes r or ctx ends; both are a normal end.
func Serve(ctx context.Context, opts Options, r io.ReadCloser, w io.WriteCloser) error {
	err := NewServer(opts).Run(ctx, &mcp.IOTransport{Reader: r, Writer: w})
	if err == nil || errors.Is(err, io.EOF) || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("demo backend: %w", err)
}

type echoIn struct {
	Text string `json:"text" jsonschema:"the text to return"`
}

func echo(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
}

type addIn struct {
	Numbers []float64 `json:"numbers" jsonschema:"the numbers to add"`
}

type addOut struct {
	Sum float64 `json:"sum" jsonschema:"the sum of the numbers"`
}

func add(_ context.Context, _ *mcp.CallToolRequest, in addIn) (*mcp.CallToolResult, addOut, error) {
	var sum float64
	for _, n := range in.Numbers {
		sum += n
	}
	// With no Content, the SDK fills it with the JSON of the output.
	return nil, addOut{Sum: sum}, nil
}

type timeIn struct {
	Zone string `json:"zone,omitempty" jsonschema:"an IANA time zone name such as America/New_York; default UTC"`
}

type timeOut struct {
	Time string `json:"time" jsonschema:"the current time, RFC 3339"`
	Zone string `json:"zone" jsonschema:"the zone the time is given in"`
}

func timeNow(now func() time.Time, in timeIn) (*mcp.CallToolResult, timeOut, error) {
	zone := in.Zone
	if zone == "" {
		zone = "UTC"
	}
	loc, err := time.LoadLocation(zone)
	if err != nil || strings.EqualFold(zone, "local") {
		// A tool error (isError), not a protocol error: the model can read
		// it and try again with a valid zone. "Local" is refused because it
		// would reveal the backend host's zone, which means nothing to a
		// caller.
		return nil, timeOut{}, fmt.Errorf("unknown time zone %q: give an IANA name such as Europe/Paris or UTC", zone)
	}
	return nil, timeOut{Time: now().In(loc).Format(time.RFC3339), Zone: loc.String()}, nil
}

type wordCountIn struct {
	Text string `json:"text" jsonschema:"the text to count"`
}

type wordCountOut struct {
	Words      int `json:"words"`
	Lines      int `json:"lines"`
	Characters int `json:"characters" jsonschema:"Unicode code points"`
}

func wordCount(_ context.Context, _ *mcp.CallToolRequest, in wordCountIn) (*mcp.CallToolResult, wordCountOut, error) {
	out := wordCountOut{Words: len(strings.Fields(in.Text)), Characters: utf8.RuneCountInString(in.Text)}
	if in.Text != "" {
		// Like wc -l, but a last line without a newline still counts.
		out.Lines = strings.Count(in.Text, "\n")
		if !strings.HasSuffix(in.Text, "\n") {
			out.Lines++
		}
	}
	return nil, out, nil
}

func summarize(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	text := req.Params.Arguments["text"]
	if strings.TrimSpace(text) == "" {
		return nil, errors.New(`argument "text" is required: the text to summarize`)
	}
	n := "3"
	if s := strings.TrimSpace(req.Params.Arguments["sentences"]); s != "" {
		var k int
		if _, err := fmt.Sscanf(s, "%d", &k); err != nil || k < 1 || k > 20 || fmt.Sprint(k) != s {
			return nil, fmt.Errorf(`argument "sentences" must be a whole number from 1 to 20, got %q`, s)
		}
		n = s
	}
	return &mcp.GetPromptResult{
		Description: "Summarize a text in at most " + n + " sentences",
		Messages: []*mcp.PromptMessage{{
			Role:    "user",
			Content: &mcp.TextContent{Text: "Summarize the following text in at most " + n + " sentences. Keep names, numbers and dates exact.\n\n" + text},
		}},
	}, nil
}

const readme = `# mcpgw demo backend

This MCP server ships inside the mcpgw binary (` + "`mcpgw demo-backend`" + `, stdio) so that
` + "`mcpgw dev`" + ` has a real backend to govern. Through the gateway its items carry the
backend's prefix, ` + "`demo__`" + `.

Tools:
- echo: returns the text it is given.
- add: adds a list of numbers.
- time_now: the current time in an IANA time zone (default UTC).
- word_count: counts the words, lines and characters of a text.

Prompt: summarize (arguments: text, sentences).

Resource: demo://readme (this text).
`
