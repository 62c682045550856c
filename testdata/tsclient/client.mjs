// Drives the official MCP TypeScript SDK client for mcpgw's tests.
//
// usage: node client.mjs (--url URL [--key KEY] | --stdio CMD [ARG...] --) < ops.json
//
// ops.json is a JSON array of operations, run in order on one session:
//   {"op":"listTools"} {"op":"callTool","name":N,"arguments":{...}}
//   {"op":"listPrompts"} {"op":"getPrompt","name":N,"arguments":{...}}
//   {"op":"listResources"} {"op":"listResourceTemplates"} {"op":"readResource","uri":U}
//   {"op":"complete","ref":{...},"argument":{...}} {"op":"setLoggingLevel","level":L}
//   {"op":"ping"}
// Server-to-client requests get fixed answers so tests can assert them:
// sampling returns the text "sampled by tsclient", elicitation accepts with
// {"name":"tsclient"}, roots/list returns file:///tsclient.
// It prints one JSON object: {"protocolVersion", "serverInfo", "results":[{op, ok, result|error}],
// "notifications":[method...]}. Exit code 0 when the session worked, even if
// some operations returned errors (the test decides); 1 on connection failure.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  ToolListChangedNotificationSchema,
  ProgressNotificationSchema,
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

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const ops = await readStdin();
  const client = new Client(
    { name: "mcpgw-tsclient", version: "1.0.0" },
    { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } },
  );
  const notifications = [];
  client.setRequestHandler(CreateMessageRequestSchema, async () => ({
    role: "assistant",
    content: { type: "text", text: "sampled by tsclient" },
    model: "tsclient-model",
    stopReason: "endTurn",
  }));
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: "accept", content: { name: "tsclient" } }));
  client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: "file:///tsclient", name: "tsclient" }] }));
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => notifications.push(n.method));
  client.setNotificationHandler(ToolListChangedNotificationSchema, (n) => notifications.push(n.method));
  client.setNotificationHandler(ProgressNotificationSchema, (n) => notifications.push(n.method));

  let transport;
  if (args.url) {
    const headers = args.key ? { Authorization: `Bearer ${args.key}` } : {};
    transport = new StreamableHTTPClientTransport(new URL(args.url), { requestInit: { headers } });
  } else {
    const env = { ...process.env };
    transport = new StdioClientTransport({ command: args.stdio[0], args: args.stdio.slice(1), env, stderr: "inherit" });
  }
  await client.connect(transport);

  const results = [];
  for (const op of ops) {
    const r = { op: op.op };
    try {
      switch (op.op) {
        case "listTools": r.result = await client.listTools(op.params ?? {}); break;
        case "callTool": r.result = await client.callTool({ name: op.name, arguments: op.arguments ?? {} }, undefined, { onprogress: () => notifications.push("progress-callback") }); break;
        case "listPrompts": r.result = await client.listPrompts(); break;
        case "getPrompt": r.result = await client.getPrompt({ name: op.name, arguments: op.arguments ?? {} }); break;
        case "listResources": r.result = await client.listResources(); break;
        case "listResourceTemplates": r.result = await client.listResourceTemplates(); break;
        case "readResource": r.result = await client.readResource({ uri: op.uri }); break;
        case "complete": r.result = await client.complete({ ref: op.ref, argument: op.argument }); break;
        case "setLoggingLevel": r.result = await client.setLoggingLevel(op.level); break;
        case "ping": r.result = await client.ping(); break;
        default: throw new Error(`unknown op ${op.op}`);
      }
      r.ok = true;
    } catch (e) {
      r.ok = false;
      r.error = { message: String(e?.message ?? e), code: e?.code ?? null };
    }
    results.push(r);
  }
  const out = {
    protocolVersion: transport.protocolVersion ?? null,
    serverInfo: client.getServerVersion() ?? null,
    serverCapabilities: client.getServerCapabilities() ?? null,
    results,
    notifications,
  };
  await client.close();
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => {
  process.stderr.write(`tsclient: ${e?.stack ?? e}\n`);
  process.exit(1);
});
