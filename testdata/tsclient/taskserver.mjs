// A stdio MCP server built on the official TypeScript SDK's (experimental)
// task support, for mcpgw's task relay tests: neither the Go SDK nor its
// everything-server implement 2025-11-25 tasks.
//
// usage: node taskserver.mjs
//
// Tools (all task-capable, taskSupport "optional"):
//   slow_echo {text}  completes after 300 ms with the text "echo: <text>",
//                     then sends notifications/tasks/status for the task.
//   forever           never completes on its own (for tasks/cancel).
// Capabilities: tasks {list, cancel, requests.tools.call}; tasks live in the
// SDK's InMemoryTaskStore.
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { InMemoryTaskStore, InMemoryTaskMessageQueue } from "@modelcontextprotocol/sdk/experimental/tasks";
import { z } from "zod";

const taskStore = new InMemoryTaskStore();
const server = new McpServer(
  { name: "mcpgw-taskserver", version: "1.0.0" },
  {
    capabilities: { tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } },
    taskStore,
    taskMessageQueue: new InMemoryTaskMessageQueue(),
  },
);

server.experimental.tasks.registerToolTask(
  "slow_echo",
  {
    description: "Echoes its text as a task after 300 ms",
    inputSchema: { text: z.string() },
    execution: { taskSupport: "optional" },
  },
  {
    async createTask({ text }, { taskStore, taskRequestedTtl }) {
      const task = await taskStore.createTask({ ttl: taskRequestedTtl });
      setTimeout(async () => {
        await taskStore.storeTaskResult(task.taskId, "completed", { content: [{ type: "text", text: `echo: ${text}` }] });
        const done = await taskStore.getTask(task.taskId);
        await server.server.notification({ method: "notifications/tasks/status", params: done });
      }, 300);
      return { task };
    },
    async getTask(_args, { taskId, taskStore }) {
      return await taskStore.getTask(taskId);
    },
    async getTaskResult(_args, { taskId, taskStore }) {
      return await taskStore.getTaskResult(taskId);
    },
  },
);

server.experimental.tasks.registerToolTask(
  "forever",
  { description: "A task that runs until cancelled", execution: { taskSupport: "optional" } },
  {
    async createTask({ taskStore, taskRequestedTtl }) {
      return { task: await taskStore.createTask({ ttl: taskRequestedTtl }) };
    },
    async getTask({ taskId, taskStore }) {
      return await taskStore.getTask(taskId);
    },
    async getTaskResult({ taskId, taskStore }) {
      return await taskStore.getTaskResult(taskId);
    },
  },
);

await server.connect(new StdioServerTransport());
