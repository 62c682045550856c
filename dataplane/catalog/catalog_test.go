package catalog

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

var clientRegex = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

func TestExposedName(t *testing.T) {
	long := strings.Repeat("x", 70)
	tests := []struct {
		prefix, name, want string
	}{
		{"github", "create_issue", "github__create_issue"},
		{"", "search", "search"},
		{"a", "has.dot", ""},   // sanitized + hashed
		{"a", "has space", ""}, // sanitized + hashed
		{"gh", long, ""},       // shortened + hashed
		{"gh", "ünïcode", ""},  // sanitized + hashed
	}
	for _, tt := range tests {
		got := ExposedName(tt.prefix, tt.name)
		if !clientRegex.MatchString(got) {
			t.Errorf("ExposedName(%q, %q) = %q, not valid for clients", tt.prefix, tt.name, got)
		}
		if tt.want != "" && got != tt.want {
			t.Errorf("ExposedName(%q, %q) = %q, want %q", tt.prefix, tt.name, got, tt.want)
		}
		if again := ExposedName(tt.prefix, tt.name); again != got {
			t.Errorf("ExposedName not stable: %q vs %q", got, again)
		}
	}
	// Sanitizing alone would merge these; the hash keeps them apart.
	if ExposedName("a", "x.y") == ExposedName("a", "x_y") {
		t.Error("x.y and x_y got the same exposed name")
	}
	if ExposedName("gh", long+"1") == ExposedName("gh", long+"2") {
		t.Error("two long names that differ at the end got the same exposed name")
	}
}

func lists(tools ...string) *Lists {
	var l Lists
	for _, n := range tools {
		l[Tools] = append(l[Tools], json.RawMessage(`{"name":"`+n+`","inputSchema":{"type":"object"}}`))
	}
	return &l
}

func TestBuildNamesAndCollisions(t *testing.T) {
	c := Build([]Source{
		{Backend: "one", Prefix: "", Lists: lists("a__b", "x")},
		{Backend: "two", Prefix: "a", Lists: lists("b", "y")},
		{Backend: "down", Prefix: "down"},
	})
	if len(c.Conflicts) != 1 || !strings.Contains(c.Conflicts[0], `"one"`) || !strings.Contains(c.Conflicts[0], `"two"`) {
		t.Fatalf("conflicts = %q, want one naming both backends", c.Conflicts)
	}
	it, ok := c.Lookup(Tools, "a__b")
	if !ok || it.Backend != "one" || it.Original != "a__b" {
		t.Errorf("a__b -> %+v", it)
	}
	it, ok = c.Lookup(Tools, "a__y")
	if !ok || it.Backend != "two" || it.Original != "y" || !strings.Contains(string(it.JSON), `"name":"a__y"`) {
		t.Errorf("a__y -> %+v %s", it, it.JSON)
	}
	if !strings.Contains(string(it.JSON), `"inputSchema"`) {
		t.Errorf("renaming lost other fields: %s", it.JSON)
	}
	if n := len(c.Items(Tools)); n != 3 {
		t.Errorf("%d tools, want 3", n)
	}
}

func TestPage(t *testing.T) {
	c := Build([]Source{
		{Backend: "one", Prefix: "one", Lists: lists("a", "b", "c")},
		{Backend: "two", Prefix: "two", Lists: lists("a", "b", "c")},
	})
	hideB := func(it *Item) bool { return it.Original != "b" }
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		items, next, err := c.Page(Tools, cursor, 2, hideB)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			got = append(got, it.Name)
		}
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		cursor = next
	}
	if strings.Join(got, ",") != "one__a,one__c,two__a,two__c" {
		t.Errorf("pages = %v", got)
	}
	// A backend joining in front between two pages moves no boundary.
	_, next, _ := c.Page(Tools, "", 2, nil) // one__a, one__b
	grown := Build([]Source{
		{Backend: "zero", Prefix: "zero", Lists: lists("a", "b")},
		{Backend: "one", Prefix: "one", Lists: lists("a", "b", "c")},
		{Backend: "two", Prefix: "two", Lists: lists("a", "b", "c")},
	})
	items, _, err := grown.Page(Tools, next, 1, nil)
	if err != nil || len(items) != 1 || items[0].Name != "one__c" {
		t.Errorf("page after growth = %v, %v; want one__c", items, err)
	}
	if _, _, err := c.Page(Tools, "bogus", 2, nil); err == nil {
		t.Error("bogus cursor accepted")
	}
	_, next, _ = c.Page(Tools, "", 1, nil)
	if _, _, err := c.Page(Prompts, next, 1, nil); err == nil {
		t.Error("a tools cursor was accepted for prompts")
	}
}

func TestResourceRouting(t *testing.T) {
	var a, b Lists
	a[Resources] = []json.RawMessage{json.RawMessage(`{"uri":"test://static","name":"s"}`)}
	b[Templates] = []json.RawMessage{json.RawMessage(`{"uriTemplate":"test://template/{id}/data","name":"t"}`)}
	c := Build([]Source{{Backend: "a", Lists: &a}, {Backend: "b", Lists: &b}})
	for uri, want := range map[string]string{
		"test://static":          "a",
		"test://template/7/data": "b",
		"test://template/7/x":    "",
		"test://other":           "",
	} {
		it, ok := c.Resource(uri)
		got := ""
		if ok {
			got = it.Backend
		}
		if got != want {
			t.Errorf("Resource(%q) -> %q, want %q", uri, got, want)
		}
	}
}

func FuzzExposedName(f *testing.F) {
	for _, s := range []string{"create_issue", "has.dot", "ünï", strings.Repeat("x", 100), ""} {
		f.Add("gh", s)
	}
	f.Fuzz(func(t *testing.T, prefix, name string) {
		if name == "" {
			return
		}
		got := ExposedName(prefix, name)
		if !clientRegex.MatchString(got) {
			t.Fatalf("ExposedName(%q, %q) = %q is not a valid client name", prefix, name, got)
		}
		if got != ExposedName(prefix, name) {
			t.Fatal("not stable")
		}
	})
}

func FuzzCursor(f *testing.F) {
	c := Build([]Source{{Backend: "one", Prefix: "one", Lists: lists("a", "b", "c")}})
	_, next, _ := c.Page(Tools, "", 1, nil)
	f.Add(next)
	f.Add("bW9ja2Vk")
	f.Fuzz(func(t *testing.T, cursor string) {
		items, _, err := c.Page(Tools, cursor, 2, nil)
		if err == nil && len(items) > 2 {
			t.Fatalf("page of %d items", len(items))
		}
	})
}
