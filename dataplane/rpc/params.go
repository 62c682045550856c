package rpc

import (
	"encoding/json"
	"fmt"
)

// Field returns the raw value of a top-level member of a JSON object, or nil
// when obj is empty, not an object, or lacks the key.
func Field(obj json.RawMessage, key string) json.RawMessage {
	if len(obj) == 0 {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(obj, &m) != nil {
		return nil
	}
	return m[key]
}

// StringField returns a top-level string member of obj ("" when absent or
// not a string).
func StringField(obj json.RawMessage, key string) string {
	v := Field(obj, key)
	if len(v) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}

// SetField returns obj with member key set to value (removed when value is
// nil). An empty obj is treated as {}.
func SetField(obj json.RawMessage, key string, value json.RawMessage) (json.RawMessage, error) {
	m := map[string]json.RawMessage{}
	if len(obj) > 0 {
		if err := json.Unmarshal(obj, &m); err != nil {
			return nil, fmt.Errorf("params must be a JSON object: %w", err)
		}
		if m == nil {
			m = map[string]json.RawMessage{}
		}
	}
	if value == nil {
		delete(m, key)
	} else {
		m[key] = value
	}
	return json.Marshal(m)
}

// MetaField returns params._meta[key].
func MetaField(params json.RawMessage, key string) json.RawMessage {
	return Field(Field(params, "_meta"), key)
}

// SetMetaField returns params with _meta[key] set to value (removed when nil).
func SetMetaField(params json.RawMessage, key string, value json.RawMessage) (json.RawMessage, error) {
	meta, err := SetField(Field(params, "_meta"), key, value)
	if err != nil {
		return nil, err
	}
	if string(meta) == "{}" {
		meta = nil
	}
	return SetField(params, "_meta", meta)
}

// Quote returns s as a JSON string.
func Quote(s string) json.RawMessage {
	b, _ := json.Marshal(s) // a string always encodes
	return b
}
