package policy

import "strings"

// ItemKind is the kind of catalog item a request touches.
type ItemKind uint8

// Item kinds. KindNone is a request that names no item.
const (
	KindNone ItemKind = iota
	KindTool
	KindPrompt
	KindResource
	numKinds
)

func (k ItemKind) String() string {
	switch k {
	case KindTool:
		return "tool"
	case KindPrompt:
		return "prompt"
	case KindResource:
		return "resource"
	}
	return "none"
}

// Method names of MCP the policy knows about (spec 2025-11-25 and 2026-07-28,
// client to server). A rule's methods must be one of these or a glob matching
// at least one that is not housekeeping, so a typo ("tool/call") is a compile
// error rather than a rule that silently never matches.
var knownMethods = []string{
	"initialize",
	"ping",
	"server/discover",
	"logging/setLevel",
	"subscriptions/listen",
	"tools/list",
	"tools/call",
	"prompts/list",
	"prompts/get",
	"resources/list",
	"resources/templates/list",
	"resources/read",
	"resources/subscribe",
	"resources/unsubscribe",
	"completion/complete",
	"tasks/get",
	"tasks/result",
	"tasks/list",
	"tasks/cancel",
	"notifications/initialized",
	"notifications/cancelled",
	"notifications/progress",
	"notifications/roots/list_changed",
	"notifications/tasks/status",
}

// methodIDs maps a known method to its bit in a rule's method mask.
var methodIDs = func() map[string]uint8 {
	if len(knownMethods) > 64 {
		panic("policy: more known methods than bits in a method mask")
	}
	m := make(map[string]uint8, len(knownMethods))
	for i, name := range knownMethods {
		m[name] = uint8(i)
	}
	return m
}()

// methodID returns the index of method in knownMethods, or -1. A switch
// rather than a map lookup: it runs on every decision and the compiler turns
// it into a binary search without hashing. TestMethodID keeps it in step
// with knownMethods.
func methodID(method string) int {
	switch method {
	case "initialize":
		return 0
	case "ping":
		return 1
	case "server/discover":
		return 2
	case "logging/setLevel":
		return 3
	case "subscriptions/listen":
		return 4
	case "tools/list":
		return 5
	case "tools/call":
		return 6
	case "prompts/list":
		return 7
	case "prompts/get":
		return 8
	case "resources/list":
		return 9
	case "resources/templates/list":
		return 10
	case "resources/read":
		return 11
	case "resources/subscribe":
		return 12
	case "resources/unsubscribe":
		return 13
	case "completion/complete":
		return 14
	case "tasks/get":
		return 15
	case "tasks/result":
		return 16
	case "tasks/list":
		return 17
	case "tasks/cancel":
		return 18
	case "notifications/initialized":
		return 19
	case "notifications/cancelled":
		return 20
	case "notifications/progress":
		return 21
	case "notifications/roots/list_changed":
		return 22
	case "notifications/tasks/status":
		return 23
	}
	return -1
}

// KnownMethods returns the MCP method names rules may name, in a stable order.
func KnownMethods() []string { return append([]string(nil), knownMethods...) }

// IsHousekeeping reports whether method is protocol housekeeping, open to
// every authenticated principal regardless of roles (DESIGN §5): the
// handshake, ping, notifications, discovery, log level, the list methods (whose
// results are filtered item by item with Visible) and the subscription stream.
// Unsubscribing and the tasks/* methods are included because they only act on
// something an earlier, already decided request created (the edge scopes task
// ids and subscriptions to the session that made them).
func IsHousekeeping(method string) bool {
	switch method {
	case "initialize", "ping", "server/discover", "logging/setLevel",
		"tools/list", "prompts/list", "resources/list", "resources/templates/list",
		"subscriptions/listen", "resources/unsubscribe",
		"tasks/get", "tasks/result", "tasks/list", "tasks/cancel":
		return true
	}
	return strings.HasPrefix(method, "notifications/")
}

// KindOf returns the item kind a method's request touches, or KindNone when
// the method touches no item or, like completion/complete, the kind depends on
// its params (a ref/prompt is KindPrompt, a ref/resource is KindResource).
func KindOf(method string) ItemKind {
	switch method {
	case "tools/call":
		return KindTool
	case "prompts/get":
		return KindPrompt
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		return KindResource
	}
	return KindNone
}

// CallMethod returns the method whose decision governs an item of kind in a
// list result: tools/list shows exactly the tools tools/call would allow, and
// so on. It returns "" for KindNone.
func CallMethod(kind ItemKind) string {
	switch kind {
	case KindTool:
		return "tools/call"
	case KindPrompt:
		return "prompts/get"
	case KindResource:
		return "resources/read"
	}
	return ""
}
