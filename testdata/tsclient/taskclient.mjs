// Drives the official TypeScript SDK client's (experimental) task support
// for mcpgw's task relay tests.
//
// usage: node taskclient.mjs (--url URL [--key KEY] | --stdio CMD [ARG...] --) --prefix P [--probe TASKID]
//
// Without --probe it runs, on one session: tools/list; a task-augmented
// call of <P>slow_echo followed to its result (callToolStream: taskCreated,
// taskStatus..., result); tasks/get and tasks/list for that task; a
// task-augmented call of <P>forever, then tasks/cancel of it; and waits up
// to 2 s for notifications/tasks/status of the first task. With --probe it
// only tries tasks/get, tasks/result and tasks/cancel of TASKID and reports
// the errors. It prints one JSON object (see the Go test for the fields).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CallToolResultSchema } from "@modelcontextprotocol/sdk/types.js";

const a = { url: "", key: "", stdio: null, prefix: "", probe: "" };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--url") a.url = argv[++i];
  else if (argv[i] === "--key") a.key = argv[++i];
  else if (argv[i] === "--prefix") a.prefix = argv[++i];
  else if (argv[i] === "--probe") a.probe = argv[++i];
  else if (argv[i] === "--stdio") {
    const rest = argv.slice(i + 1);
    const end = rest.indexOf("--");
    a.stdio = end < 0 ? rest : rest.slice(0, end);
    i += a.stdio.length + 1;
  } else throw new Error(`unknown argument ${argv[i]}`);
}

const transport = a.url
  ? new StreamableHTTPClientTransport(new URL(a.url), a.key ? { requestInit: { headers: { Authorization: `Bearer ${a.key}` } } } : undefined)
  : new StdioClientTransport({ command: a.stdio[0], args: a.stdio.slice(1), stderr: "inherit" });
const client = new Client({ name: "mcpgw-taskclient", version: "1.0.0" }, { capabilities: {} });
const statuses = [];
client.fallbackNotificationHandler = async (n) => {
  if (n.method === "notifications/tasks/status") statuses.push(n.params);
};
const errText = (e) => ({ code: e?.code, message: String(e?.message ?? e) });
const out = {};
try {
  await client.connect(transport);
  out.serverTasks = client.getServerCapabilities()?.tasks ?? null;
  if (a.probe) {
    for (const [name, f] of [
      ["get", () => client.experimental.tasks.getTask(a.probe)],
      ["result", () => client.experimental.tasks.getTaskResult(a.probe, CallToolResultSchema)],
      ["cancel", () => client.experimental.tasks.cancelTask(a.probe)],
    ]) {
      try {
        out[name] = { ok: true, result: await f() };
      } catch (e) {
        out[name] = { ok: false, error: errText(e) };
      }
    }
    const list = await client.experimental.tasks.listTasks();
    out.listIds = list.tasks.map((t) => t.taskId);
  } else {
    const tools = await client.listTools();
    out.taskSupport = Object.fromEntries(tools.tools.map((t) => [t.name, t.execution?.taskSupport ?? null]));
    out.stream = [];
    for await (const msg of client.experimental.tasks.callToolStream(
      { name: `${a.prefix}slow_echo`, arguments: { text: "hi" } },
      CallToolResultSchema,
      { task: { ttl: 60000 } },
    )) {
      if (msg.type === "taskCreated") out.taskId = msg.task.taskId;
      if (msg.type === "result") out.result = msg.result;
      if (msg.type === "error") out.streamError = errText(msg.error);
      out.stream.push(msg.type === "taskStatus" ? `taskStatus:${msg.task.status}` : msg.type);
    }
    out.get = await client.experimental.tasks.getTask(out.taskId);
    const list = await client.experimental.tasks.listTasks();
    out.listIds = list.tasks.map((t) => t.taskId);
    for await (const msg of client.experimental.tasks.callToolStream({ name: `${a.prefix}forever`, arguments: {} }, CallToolResultSchema, { task: { ttl: 60000 } })) {
      if (msg.type === "taskCreated") {
        out.foreverId = msg.task.taskId;
        break;
      }
      if (msg.type === "error") out.foreverError = errText(msg.error);
    }
    if (out.foreverId) {
      try {
        out.cancel = await client.experimental.tasks.cancelTask(out.foreverId);
      } catch (e) {
        out.cancelError = errText(e);
      }
    }
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline && !statuses.some((s) => s.taskId === out.taskId)) {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  out.statuses = statuses;
} catch (e) {
  out.fatal = errText(e);
}
console.log(JSON.stringify(out));
await client.close().catch(() => {});
process.exit(out.fatal ? 1 : 0);
