package document

// normalize turns empty lists and maps into nil, so that "tools: []" and an
// absent field mean the same thing everywhere (policy treats both as "any")
// and a Document survives Marshal and Parse unchanged.
func (d *Document) normalize() {
	d.Backends = nilIfEmpty(d.Backends)
	d.Roles = nilIfEmpty(d.Roles)
	d.Bindings = nilIfEmpty(d.Bindings)
	d.Principals = nilIfEmpty(d.Principals)
	for i := range d.Backends {
		b := &d.Backends[i]
		if b.Stdio != nil {
			b.Stdio.Command = nilIfEmpty(b.Stdio.Command)
			if len(b.Stdio.Env) == 0 {
				b.Stdio.Env = nil
			}
		}
		if b.HTTP != nil && len(b.HTTP.Headers) == 0 {
			b.HTTP.Headers = nil
		}
	}
	for i := range d.Roles {
		r := &d.Roles[i]
		r.Rules = nilIfEmpty(r.Rules)
		for j := range r.Rules {
			u := &r.Rules[j]
			u.Methods = nilIfEmpty(u.Methods)
			u.Backends = nilIfEmpty(u.Backends)
			u.Tools = nilIfEmpty(u.Tools)
			u.Prompts = nilIfEmpty(u.Prompts)
			u.Resources = nilIfEmpty(u.Resources)
		}
	}
	for i := range d.Bindings {
		d.Bindings[i].Subjects = nilIfEmpty(d.Bindings[i].Subjects)
	}
	for i := range d.Principals {
		d.Principals[i].Groups = nilIfEmpty(d.Principals[i].Groups)
	}
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}
