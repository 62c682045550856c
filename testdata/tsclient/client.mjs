// Drives the official MCP TypeScript SDK client for mcpgw's tests.
//
// usage: node client.mjs (--url URL [--key KEY] | --stdio CMD [ARG...] --) < ops.json
//
// ops.json is a JSON array of operations, run in order on one session:
//   {"op":"listTools"} {"op":"listPrompts"} {"op":"listResources"} {"op":"listResourceTemplates"}
//       follow nextCursor to the end; the result is the first page with the
//       items of all pages and no nextCursor; "pages" says how many there were.
//   {"op":"callTool","name":N,"arguments":{...},"progress":true}
//       "progress" asks for progress (the SDK sends a progressToken).
//   {"op":"callToolCancelled","name":N,"arguments":{...},"timeoutMs":T}
//       calls a tool that sends a server→client request (sampling, elicitation,
//       roots), aborts the call as soon as that request arrives, holds the
//       request unanswered and reports whether the server cancelled it within T.
//   {"op":"getPrompt","name":N,"arguments":{...}} {"op":"readResource","uri":U}
//   {"op":"subscribeResource","uri":U} {"op":"unsubscribeResource","uri":U}
//   {"op":"complete","ref":{...},"argument":{...}} {"op":"setLoggingLevel","level":L}
//   {"op":"ping"}
//   {"op":"waitNotification","method":M,"timeoutMs":T}
//       succeeds once a notification M arrived during this op or the one before.
//   {"op":"mark","file":F}
//       creates the file F, telling the test that every op before it is done
//       (e.g. so it can change the policy while the session stays open).
//   {"op":"waitToolGone","name":N,"timeoutMs":T}
//       lists tools again each time notifications/tools/list_changed arrives
//       (during this op or the one before) until N is no longer listed, as a
//       client that follows list_changed would; the result has "at" (Unix ms
//       when the list without N arrived), "listChanged" (notifications seen)
//       and the tool names.
//
// Server→client requests get answers the tests can assert: sampling returns
// the text "sampled by tsclient", elicitation accepts with a value for every
// property of the requested schema (its default, else the first allowed
// value, else a fixed one), roots/list returns file:///tsclient.
//
// It prints one JSON object:
//   {"initialize": the initialize result without serverInfo and capabilities,
//    "serverInfo", "serverCapabilities",
//    "results":[{op, ok, result | error:{code, message}, pages,
//                notifications:[{method, params}], requests:[{method, params}],
//                errors:[string]}]}
// where notifications and requests are the raw messages the server sent while
// the op ran (attributed to the op in progress, or the last one finished) and
// errors are what the SDK reported through onerror (e.g. a progress
// notification for an unknown token). Exit code 0 when the session worked,
// even if some operations failed (the test decides); 1 on connection failure.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

function parseArgs(argv) {
  const a = { url: "", key: "", stdio: null };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--url") a.url = argv[++i];
    else if (argv[i] === "--key") a.key = argv[++i];
    else if (argv[i] === "--stdio") {
      const rest = argv.slice(i + 1);
      const end = rest.indexOf("--");
      a.stdio = end < 0 ? rest : rest.slice(0, end);
      i += a.stdio.length + 1;
    } else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!a.url && !a.stdio) throw new Error("need --url or --stdio");
  return a;
}

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  const s = Buffer.concat(chunks).toString("utf8").trim();
  return s ? JSON.parse(s) : [];
}

// fillSchema answers a form elicitation with a valid value for every property.
function fillSchema(schema) {
  const out = {};
  for (const [name, p] of Object.entries(schema?.properties ?? {})) {
    if (p.default !== undefined) out[name] = p.default;
    else if (Array.isArray(p.enum) && p.enum.length) out[name] = p.enum[0];
    else if (Array.isArray(p.oneOf) && p.oneOf.length) out[name] = p.oneOf[0].const;
    else if (p.type === "array") {
      const it = p.items ?? {};
      out[name] = [it.enum?.[0] ?? it.anyOf?.[0]?.const ?? it.oneOf?.[0]?.const ?? "tsclient"];
    } else if (p.type === "boolean") out[name] = true;
    else if (p.type === "integer" || p.type === "number") out[name] = 7;
    else if (p.format === "email" || name === "email") out[name] = "tsclient@example.com";
    else out[name] = "tsclient";
  }
  return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const ops = await readStdin();
  const client = new Client(
    { name: "mcpgw-tsclient", version: "1.0.0" },
    { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } },
  );

  const results = [];
  let cur = null; // the op in progress, or the last one finished
  const bucket = () => cur ?? { notifications: [], requests: [], errors: [] };
  // hold, when set, makes the next server→client request wait unanswered
  // until the server cancels it (callToolCancelled).
  let hold = null;

  const serve = (answer) => async (req, extra) => {
    if (hold) {
      const h = hold;
      hold = null;
      h.arrived();
      const cancelled = await new Promise((resolve) => {
        if (extra.signal.aborted) return resolve(true);
        extra.signal.addEventListener("abort", () => resolve(true), { once: true });
        setTimeout(() => resolve(false), h.timeoutMs);
      });
      h.done(cancelled);
    }
    return answer(req);
  };
  client.setRequestHandler(CreateMessageRequestSchema, serve(() => ({
    role: "assistant",
    content: { type: "text", text: "sampled by tsclient" },
    model: "tsclient-model",
    stopReason: "endTurn",
  })));
  client.setRequestHandler(ElicitRequestSchema, serve((req) => ({ action: "accept", content: fillSchema(req.params.requestedSchema) })));
  client.setRequestHandler(ListRootsRequestSchema, serve(() => ({ roots: [{ uri: "file:///tsclient", name: "tsclient" }] })));
  // Notifications are recorded raw by the tap below; the SDK's own progress
  // handler must stay in place (it feeds onprogress and resets timeouts).
  client.fallbackNotificationHandler = async () => {};
  client.onerror = (e) => bucket().errors.push(String(e?.message ?? e));

  let transport;
  if (args.url) {
    const headers = args.key ? { Authorization: `Bearer ${args.key}` } : {};
    transport = new StreamableHTTPClientTransport(new URL(args.url), { requestInit: { headers } });
  } else {
    transport = new StdioClientTransport({ command: args.stdio[0], args: args.stdio.slice(1), env: { ...process.env }, stderr: "inherit" });
  }
  // Tap every message the server sends, from initialize on: the SDK
  // (re)assigns transport.onmessage in connect, so wrap whatever it sets.
  let initialize = null;
  let handler;
  Object.defineProperty(transport, "onmessage", {
    configurable: true,
    get: () => handler,
    set: (h) => {
      handler = h && ((msg, extra) => {
        if (msg && typeof msg.method === "string") {
          const rec = { method: msg.method, params: msg.params ?? null };
          if (msg.id === undefined) bucket().notifications.push(rec);
          else bucket().requests.push(rec);
        } else if (!initialize && msg?.result?.protocolVersion) {
          initialize = msg.result;
        }
        h(msg, extra);
      });
    },
  });
  await client.connect(transport);

  const listAll = async (fn, key) => {
    let first = null;
    let pages = 0;
    let cursor;
    const items = [];
    do {
      const page = await fn(cursor === undefined ? {} : { cursor });
      pages++;
      first ??= page;
      items.push(...(page[key] ?? []));
      cursor = page.nextCursor;
    } while (cursor !== undefined && pages < 100);
    const { nextCursor, ...rest } = first;
    return { result: { ...rest, [key]: items }, pages };
  };

  for (let i = 0; i < ops.length; i++) {
    const op = ops[i];
    const r = { op: op.op, notifications: [], requests: [], errors: [] };
    const prev = cur;
    cur = r;
    results.push(r);
    try {
      switch (op.op) {
        case "listTools": Object.assign(r, await listAll((p) => client.listTools(p), "tools")); break;
        case "listPrompts": Object.assign(r, await listAll((p) => client.listPrompts(p), "prompts")); break;
        case "listResources": Object.assign(r, await listAll((p) => client.listResources(p), "resources")); break;
        case "listResourceTemplates": Object.assign(r, await listAll((p) => client.listResourceTemplates(p), "resourceTemplates")); break;
        case "callTool": {
          const opts = op.progress ? { onprogress: () => {} } : undefined;
          r.result = await client.callTool({ name: op.name, arguments: op.arguments ?? {} }, undefined, opts);
          break;
        }
        case "callToolCancelled": {
          const ac = new AbortController();
          let arrived = false;
          const settled = new Promise((done) => {
            hold = { timeoutMs: op.timeoutMs ?? 5000, arrived: () => { arrived = true; ac.abort("cancelled by tsclient"); }, done };
          });
          let rejected = false;
          try {
            await client.callTool({ name: op.name, arguments: op.arguments ?? {} }, undefined, { signal: ac.signal });
          } catch {
            rejected = true;
          }
          const cancelled = arrived ? await settled : false;
          hold = null;
          r.result = { serverRequestArrived: arrived, callRejected: rejected, serverRequestCancelled: cancelled };
          break;
        }
        case "getPrompt": r.result = await client.getPrompt({ name: op.name, arguments: op.arguments ?? {} }); break;
        case "readResource": r.result = await client.readResource({ uri: op.uri }); break;
        case "subscribeResource": r.result = await client.subscribeResource({ uri: op.uri }); break;
        case "unsubscribeResource": r.result = await client.unsubscribeResource({ uri: op.uri }); break;
        case "complete": r.result = await client.complete({ ref: op.ref, argument: op.argument }); break;
        case "setLoggingLevel": r.result = await client.setLoggingLevel(op.level); break;
        case "ping": r.result = await client.ping(); break;
        case "waitNotification": {
          const deadline = Date.now() + (op.timeoutMs ?? 5000);
          const find = () => [...(prev?.notifications ?? []), ...r.notifications].find((n) => n.method === op.method);
          while (!find() && Date.now() < deadline) await sleep(10);
          const n = find();
          if (!n) throw new Error(`no ${op.method} within ${op.timeoutMs ?? 5000}ms`);
          r.result = n;
          break;
        }
        case "mark": {
          const { writeFile } = await import("node:fs/promises");
          await writeFile(op.file, String(Date.now()));
          r.result = { at: Date.now() };
          break;
        }
        case "waitToolGone": {
          const deadline = Date.now() + (op.timeoutMs ?? 5000);
          const changes = () => [...(prev?.notifications ?? []), ...r.notifications].filter((n) => n.method === "notifications/tools/list_changed").length;
          let seen = 0;
          let names = null;
          while (Date.now() < deadline) {
            if (changes() > seen) {
              seen = changes();
              names = (await listAll((p) => client.listTools(p), "tools")).result.tools.map((t) => t.name);
              if (!names.includes(op.name)) break;
            }
            await sleep(5);
          }
          if (names === null || names.includes(op.name)) throw new Error(`${op.name} still listed after ${op.timeoutMs ?? 5000}ms (${seen} list_changed)`);
          r.result = { at: Date.now(), listChanged: seen, tools: names };
          break;
        }
        default: throw new Error(`unknown op ${op.op}`);
      }
      r.ok = true;
    } catch (e) {
      r.ok = false;
      r.error = { code: e?.code ?? null, message: String(e?.message ?? e) };
    }
  }
  const { serverInfo, capabilities, ...init } = initialize ?? {};
  // Serialized before close: closing aborts the transport's own requests
  // (a GET stream still connecting), which the SDK reports through onerror;
  // that is the client shutting down, not part of the last op.
  const out = JSON.stringify({
    initialize: init,
    serverInfo: serverInfo ?? null,
    serverCapabilities: capabilities ?? null,
    results,
  });
  await client.close();
  process.stdout.write(out + "\n");
}

main().catch((e) => {
  process.stderr.write(`tsclient: ${e?.stack ?? e}\n`);
  process.exit(1);
});
