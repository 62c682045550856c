package store

// compileErrors runs the edge's own compiler over the config. It is filled in
// once internal/policy's Compile lands; until then structuralErrors is the
// whole check.
func compileErrors(c *Config) []FieldError { return nil }
