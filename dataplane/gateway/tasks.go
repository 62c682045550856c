package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/rpc"
	"github.com/mcpgw/mcpgw/dataplane/session"
	"github.com/mcpgw/mcpgw/dataplane/state"
)

// Tasks (2025-11-25 basic/utilities/tasks) pass through to the backend that
// created them. A backend's task ids live in its own (shared) upstream
// session, so the edge gives clients ids of its own, remembers which
// backend, upstream id, principal and tool each stands for, and rewrites
// ids both ways: in CreateTaskResult, tasks/get|result|cancel and their
// results, tasks/list, notifications/tasks/status and the related-task
// _meta of results and server→client requests. A task is only visible to
// the principal that created it (the spec binds tasks to the authorization
// context); another principal gets "task not found", as for an unknown id.

const metaRelatedTask = "io.modelcontextprotocol/related-task"

// taskTable maps the edge's task ids to backends' tasks.
type taskTable struct {
	// mu guards byID, byUp and swept.
	mu    sync.Mutex
	byID  map[string]*taskRoute
	byUp  map[taskKey]*taskRoute
	swept time.Time
}

type taskKey struct{ backend, id string }

type taskRoute struct {
	id        string // the edge's
	backend   string
	upstream  string // the backend's
	principal string
	tool      string // exposed name, for the policy check on later requests
	expires   time.Time
}

// defaultTaskKeep is how long a task without a ttl is remembered.
const defaultTaskKeep = 24 * time.Hour

// add registers a backend's new task and returns the edge's id for it.
func (t *taskTable) add(backend, upstream, principal, tool string, ttl time.Duration) string {
	if ttl <= 0 {
		ttl = defaultTaskKeep
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	r := &taskRoute{
		id:        "mcpgw-task-" + hex.EncodeToString(b[:]),
		backend:   backend,
		upstream:  upstream,
		principal: principal,
		tool:      tool,
		// A minute of slack: the backend may keep it a little longer.
		expires: time.Now().Add(ttl + time.Minute),
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID == nil {
		t.byID = make(map[string]*taskRoute)
		t.byUp = make(map[taskKey]*taskRoute)
	}
	now := time.Now()
	if now.Sub(t.swept) > time.Minute {
		t.swept = now
		for id, old := range t.byID {
			if now.After(old.expires) {
				delete(t.byID, id)
				delete(t.byUp, taskKey{old.backend, old.upstream})
			}
		}
	}
	t.byID[r.id] = r
	t.byUp[taskKey{backend, upstream}] = r
	return r.id
}

func (t *taskTable) get(id string) *taskRoute {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byID[id]
}

func (t *taskTable) upstream(backend, id string) *taskRoute {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byUp[taskKey{backend, id}]
}

// adoptCreated registers the task of a CreateTaskResult (a task-augmented
// tools/call answered with {"task":{...}}) and returns the result with the
// edge's id. Any other result comes back with its related-task id mapped.
func (g *Gateway) adoptCreated(backend string, rq *Request, result json.RawMessage) json.RawMessage {
	if !bytes.Contains(result, []byte(`"taskId"`)) {
		return result
	}
	task := rpc.Field(result, "task")
	if len(task) == 0 {
		return g.mapRelated(backend, result)
	}
	up := rpc.StringField(task, "taskId")
	if up == "" {
		return result
	}
	var ttl time.Duration
	if ms, err := strconv.ParseInt(string(rpc.Field(task, "ttl")), 10, 64); err == nil && ms > 0 {
		ttl = time.Duration(ms) * time.Millisecond
	}
	id := g.tasks.add(backend, up, rq.Principal.Name, rq.Name, ttl)
	task, err := rpc.SetField(task, "taskId", rpc.Quote(id))
	if err != nil {
		return result
	}
	out, err := rpc.SetField(result, "task", task)
	if err != nil {
		return result
	}
	return out
}

// mapRelated rewrites the related-task _meta of a result or params from
// the backend's id to the edge's; an id the edge does not know is removed,
// so a backend's ids never reach a client.
func (g *Gateway) mapRelated(backend string, obj json.RawMessage) json.RawMessage {
	rel := rpc.MetaField(obj, metaRelatedTask)
	if len(rel) == 0 {
		return obj
	}
	var v json.RawMessage
	if r := g.tasks.upstream(backend, rpc.StringField(rel, "taskId")); r != nil {
		v, _ = rpc.SetField(rel, "taskId", rpc.Quote(r.id))
	}
	out, err := rpc.SetMetaField(obj, metaRelatedTask, v)
	if err != nil {
		return obj
	}
	return out
}

// mapTask rewrites a Task object's taskId (tasks/get, tasks/cancel
// results, list entries, status notifications) to the edge's id; ok is
// false when the edge does not know the task.
func (g *Gateway) mapTask(backend string, task json.RawMessage) (json.RawMessage, *taskRoute, bool) {
	r := g.tasks.upstream(backend, rpc.StringField(task, "taskId"))
	if r == nil {
		return nil, nil, false
	}
	out, err := rpc.SetField(task, "taskId", rpc.Quote(r.id))
	if err != nil {
		return nil, nil, false
	}
	return out, r, true
}

// errTaskNotFound answers a task id the caller may not see; the same for
// an unknown id and another principal's, so ids cannot be probed.
func errTaskNotFound(id string) *rpc.Error {
	return rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: task %q not found", id)
}

// taskRequest serves tasks/get, tasks/result and tasks/cancel: find the
// task's backend, check the caller may still use the tool that made it,
// forward with the backend's id, map the answer back.
func (g *Gateway) taskRequest(ctx context.Context, st *state.State, sess *session.Session, m *message, out Outbound, rq *Request) (json.RawMessage, json.RawMessage) {
	id := rpc.StringField(m.Params, "taskId")
	if id == "" {
		return nil, g.fail(rq, rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: params.taskId is required"))
	}
	r := g.tasks.get(id)
	if r == nil || r.principal != rq.Principal.Name {
		return nil, g.fail(rq, errTaskNotFound(id))
	}
	rq.Backend, rq.Name = r.backend, r.tool
	if !g.allowed(ctx, st, rq, Action{Method: "tools/call", Backend: r.backend, Name: r.tool}) {
		return nil, g.denied(rq)
	}
	params, err := rpc.SetField(m.Params, "taskId", rpc.Quote(r.upstream))
	if err != nil {
		return nil, g.fail(rq, rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: %v", err))
	}
	result, rerr := g.forward(ctx, st, sess, r.backend, m.Method, params, out, rq)
	if rerr != nil {
		return nil, rerr
	}
	if m.Method == "tasks/result" {
		return g.mapRelated(r.backend, result), nil
	}
	// tasks/get and tasks/cancel answer with the Task itself.
	if mapped, _, ok := g.mapTask(r.backend, result); ok {
		return mapped, nil
	}
	return result, nil
}

// maxTaskPages bounds how many pages of one backend's tasks/list are read.
const maxTaskPages = 100

// taskList serves tasks/list: the caller's tasks from every backend that
// lists tasks, with the edge's ids, in one page.
func (g *Gateway) taskList(ctx context.Context, st *state.State, rq *Request) (json.RawMessage, json.RawMessage) {
	if !g.allowed(ctx, st, rq, Action{Method: rq.Method}) {
		return nil, g.denied(rq)
	}
	out := []byte(`{"tasks":[`)
	n := 0
	for _, b := range st.Backends {
		caps := rpc.Field(rpc.Field(b.InitializeResult(), "capabilities"), "tasks")
		if len(rpc.Field(caps, "list")) == 0 || !b.Healthy() {
			continue
		}
		cursor := ""
		for page := 0; page < maxTaskPages; page++ {
			var params json.RawMessage
			if cursor != "" {
				params = json.RawMessage(`{"cursor":` + string(rpc.Quote(cursor)) + `}`)
			}
			// A per_principal backend keeps the caller's tasks in the
			// caller's own session.
			resp, err := b.For(rq.Principal.Name).Call(ctx, "tasks/list", params, nil)
			if err != nil || len(resp.Error) > 0 {
				g.log.Warn("listing a backend's tasks", "backend", b.Name(), "err", err, "error", string(resp.Error))
				break
			}
			var tasks []json.RawMessage
			_ = json.Unmarshal(rpc.Field(resp.Result, "tasks"), &tasks)
			for _, task := range tasks {
				mapped, r, ok := g.mapTask(b.Name(), task)
				if !ok || r.principal != rq.Principal.Name {
					continue
				}
				if !g.opts.Decider.Decide(ctx, st, rq.Principal, Action{Method: "tools/call", Backend: r.backend, Name: r.tool}).Allow {
					continue
				}
				if n > 0 {
					out = append(out, ',')
				}
				out = append(out, mapped...)
				n++
			}
			if cursor = rpc.StringField(resp.Result, "nextCursor"); cursor == "" {
				break
			}
		}
	}
	return append(out, `]}`...), nil
}

// taskStatus maps a backend's notifications/tasks/status to the edge's id;
// ok is false for a task the edge does not know (the notification is then
// dropped: a backend's ids never reach a client).
func (g *Gateway) taskStatus(backend string, params json.RawMessage) (json.RawMessage, *taskRoute, bool) {
	return g.mapTask(backend, params)
}

// taskStatusNotification delivers a status notification sent outside any
// call to the sessions of the task's principal.
func (g *Gateway) taskStatusNotification(backend string, params json.RawMessage) {
	mapped, r, ok := g.taskStatus(backend, params)
	if !ok {
		return
	}
	msg := rpc.AppendNotification(nil, "notifications/tasks/status", mapped)
	g.sessions.Range(func(s *session.Session) bool {
		if s.Principal == r.principal && s.Initialized() {
			s.Outbox.Push(msg)
		}
		return true
	})
}

// taskCapabilities is the union of what backends offer for tasks, or nil.
func taskCapabilities(st *state.State) json.RawMessage {
	var list, cancel, toolsCall bool
	for _, b := range st.Backends {
		caps := rpc.Field(rpc.Field(b.InitializeResult(), "capabilities"), "tasks")
		if len(caps) == 0 {
			continue
		}
		list = list || len(rpc.Field(caps, "list")) > 0
		cancel = cancel || len(rpc.Field(caps, "cancel")) > 0
		toolsCall = toolsCall || len(rpc.Field(rpc.Field(rpc.Field(caps, "requests"), "tools"), "call")) > 0
	}
	if !list && !cancel && !toolsCall {
		return nil
	}
	b := []byte(`{`)
	sep := ""
	if list {
		b = append(b, `"list":{}`...)
		sep = ","
	}
	if cancel {
		b = append(b, sep+`"cancel":{}`...)
		sep = ","
	}
	if toolsCall {
		b = append(b, sep+`"requests":{"tools":{"call":{}}}`...)
	}
	return append(b, '}')
}
