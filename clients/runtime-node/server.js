#!/usr/bin/env node
// A MobKit agent runtime (mobkit.runtime.v1.AgentRuntimeService) in Node.js.
//
// It loads MobKit's .proto files at run time (no code generation) and hosts two
// agent kinds in memory:
//   * `echo`: replies with what it was sent;
//   * `relay`: `relay PEER TOOL [JSON]` messages the managed peer PEER and calls
//     the module tool TOOL (both at once, during the turn) and replies with what
//     came back; anything else is noted. Its reply is also streamed as text deltas.
// Turns run over RunTurnStream: the agent's peer message and tool call go back to
// the orchestrator as `callback` messages with call ids, answered on the same
// stream; refusals come back as ErrorInfo fields and fail the turn with the same
// reason (TOPOLOGY_VIOLATION, TOOL_NOT_GRANTED, ...). The unary RunTurn runs turns
// without a way back: a callback there is CALLBACK_UNAVAILABLE. A failed turn
// leaves the session's state as it was. Snapshots are the JSON of MobKit's
// reference runtime ({format, identity, profile, turns, state}).
//
// Usage: node server.js [--listen HOST:PORT] [--protos DIR]
// Prints `listening on HOST:PORT` to stderr once it serves. Point an
// orchestrator at it with `--runtime-addr HOST:PORT` (and list its kinds in the
// config's `[roster] agent_kinds = ["echo", "relay"]`).
"use strict";

const crypto = require("node:crypto");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const DOMAIN = "mobkit.dev";
const SNAPSHOT_FORMAT = 1;
// The gRPC code of each reason this runtime may end a turn with (API.md).
const CODES = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  SESSION_NOT_FOUND: grpc.status.NOT_FOUND,
  STORE_CORRUPTION: grpc.status.DATA_LOSS,
  TOPOLOGY_VIOLATION: grpc.status.PERMISSION_DENIED,
  CALLBACK_UNAVAILABLE: grpc.status.UNAVAILABLE,
  TOOL_NOT_GRANTED: grpc.status.PERMISSION_DENIED,
  TOOL_NOT_FOUND: grpc.status.NOT_FOUND,
  TOOL_FAILED: grpc.status.FAILED_PRECONDITION,
  MODULE_UNAVAILABLE: grpc.status.UNAVAILABLE,
  NOT_ACTIVE: grpc.status.FAILED_PRECONDITION,
  IDENTITY_NOT_FOUND: grpc.status.NOT_FOUND,
};

function parseArgs(argv) {
  const args = { listen: "127.0.0.1:0", protos: path.join(__dirname, "..", "..", "protos") };
  for (let i = 0; i < argv.length; i += 1) {
    const [flag, inline] = argv[i].split("=", 2);
    const value = inline !== undefined ? inline : argv[++i];
    if (flag === "--listen") args.listen = value;
    else if (flag === "--protos") args.protos = value;
    else throw new Error(`unknown option ${argv[i]}`);
  }
  return args;
}

// google.rpc.Status with ErrorInfo details: only their wire format matters.
const rpcTypes = protobuf.parse(`
  syntax = "proto3";
  package google.rpc;
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
`, { keepCase: true }).root;
const Status = rpcTypes.lookupType("google.rpc.Status");
const ErrorInfo = rpcTypes.lookupType("google.rpc.ErrorInfo");

// An error with a MobKit reason: what an agent's turn fails with.
class MobKitError extends Error {
  constructor(reason, message, metadata = {}) {
    super(message);
    this.reason = reason;
    this.metadata = metadata;
  }
}

// The gRPC status MobKit's clients decode: a code and exactly one ErrorInfo.
function toStatus(err) {
  const known = err instanceof MobKitError;
  const reason = known ? err.reason : "INTERNAL";
  const message = known ? err.message : "internal error";
  const code = known ? CODES[reason] ?? grpc.status.UNKNOWN : grpc.status.INTERNAL;
  if (!known) console.error(err);
  const info = ErrorInfo.encode(
    ErrorInfo.create({ reason, domain: DOMAIN, metadata: known ? err.metadata : {} }),
  ).finish();
  const status = Status.encode(
    Status.create({
      code,
      message,
      details: [{ type_url: "type.googleapis.com/google.rpc.ErrorInfo", value: info }],
    }),
  ).finish();
  const trailers = new grpc.Metadata();
  trailers.set("grpc-status-details-bin", Buffer.from(status));
  return { code, details: message, metadata: trailers };
}

// -- agents ---------------------------------------------------------------------------

const AGENTS = {
  async echo(ctx, text) {
    return text;
  },
  async relay(ctx, text) {
    const turns = (ctx.state.turns || 0) + 1;
    ctx.state.turns = turns;
    const [command, peer, tool, ...rest] = text.trim().split(" ");
    let said;
    if (command === "relay" && peer && tool) {
      const args = rest.length ? JSON.parse(rest.join(" ")) : {};
      const [reply, result] = await Promise.all([
        ctx.sendToPeer(peer, `hello from ${ctx.identity}`),
        ctx.callTool(tool, args),
      ]);
      said = `${peer} said: ${reply}; ${tool} -> ${JSON.stringify(result)}`;
      ctx.state.relayed = (ctx.state.relayed || 0) + 1;
    } else {
      said = `noted ${JSON.stringify(text)}`;
    }
    const out = `[${ctx.identity} turn ${turns} in node] ${said}`;
    ctx.emitDelta(out.slice(0, 10));
    ctx.emitDelta(out.slice(10));
    return out;
  },
};

// -- sessions ---------------------------------------------------------------------------

const sessions = new Map(); // session_id -> {identity, profile, agentRuntimeId, turns, state, busy}

function session(id) {
  const s = sessions.get(id);
  if (!s) throw new MobKitError("SESSION_NOT_FOUND", `no open session '${id}' in this runtime`, { session_id: id });
  return s;
}

function kind(profile) {
  if (!(profile in AGENTS)) {
    const known = Object.keys(AGENTS).sort().join(", ");
    throw new MobKitError("INVALID_ARGUMENT", `unknown profile '${profile}' (known: ${known})`, { field: "profile" });
  }
  return profile;
}

function createSession(req) {
  const existing = req.session_id && sessions.get(req.session_id);
  if (existing) {
    if (existing.identity !== req.identity) {
      throw new MobKitError("INVALID_ARGUMENT", "session belongs to another identity", { field: "session_id" });
    }
    return existing;
  }
  const s = {
    sessionId: req.session_id || `sess-${crypto.randomUUID().replaceAll("-", "")}`,
    identity: req.identity,
    profile: kind(req.profile),
    agentRuntimeId: req.agent_runtime_id || `rt-node-${crypto.randomUUID().slice(0, 8)}`,
    turns: 0,
    state: {},
  };
  sessions.set(s.sessionId, s);
  return s;
}

function resumeSession(req) {
  let body;
  try {
    body = JSON.parse(Buffer.from(req.snapshot?.data || []).toString("utf8"));
    if (body.format !== SNAPSHOT_FORMAT || typeof body.state !== "object" || body.state === null) {
      throw new Error("unknown snapshot format");
    }
  } catch (e) {
    throw new MobKitError("STORE_CORRUPTION", `undecodable session snapshot: ${e.message}`, {
      identity: req.identity,
    });
  }
  const s = {
    sessionId: req.session_id,
    identity: req.identity,
    profile: kind(req.profile || body.profile),
    agentRuntimeId: req.agent_runtime_id,
    turns: Number(body.turns) || 0,
    state: body.state,
  };
  sessions.set(s.sessionId, s);
  return s;
}

function snapshot(s) {
  const body = { format: SNAPSHOT_FORMAT, identity: s.identity, profile: s.profile, turns: s.turns, state: s.state };
  return { data: Buffer.from(JSON.stringify(body)) };
}

// One turn: `callbacks` is {peer(to, text), tool(name, args), delta(text)} or null
// (unary RunTurn). A failed turn restores the state it started from.
async function runTurn(req, callbacks) {
  const s = session(req.session_id);
  const peers = req.peers || [];
  const unavailable = (what) =>
    new MobKitError("CALLBACK_UNAVAILABLE", `session '${s.sessionId}': ${what} cannot reach the orchestrator`, {
      session_id: s.sessionId,
      callback: what,
    });
  const ctx = {
    identity: s.identity,
    state: structuredClone(s.state),
    async sendToPeer(peer, text) {
      if (!peers.includes(peer)) {
        throw new MobKitError("TOPOLOGY_VIOLATION", `'${s.identity}' has no managed peer edge to '${peer}'`, {
          from: s.identity,
          to: peer,
        });
      }
      if (!callbacks) throw unavailable("a peer message");
      return callbacks.peer(peer, text);
    },
    async callTool(name, args) {
      if (!callbacks) throw unavailable("a tool call");
      return callbacks.tool(name, args);
    },
    emitDelta(text) {
      if (callbacks && text) callbacks.delta(text);
    },
  };
  const output = await AGENTS[s.profile](ctx, req.content?.text || "");
  // Only a turn that finished changes the session.
  s.state = ctx.state;
  s.turns += 1;
  return { output, turn: String(s.turns), peer_messages: [], structured_output_json: "" };
}

function unary(handler) {
  return (call, callback) => {
    Promise.resolve()
      .then(() => handler(call.request))
      .then((reply) => callback(null, reply), (err) => callback(toStatus(err)));
  };
}

// RunTurnStream: the first message starts the turn; callbacks go out with call
// ids and their answers come back on the same stream, in any order.
function runTurnStream(call) {
  const pending = new Map(); // call_id -> {resolve, reject}
  let nextId = 1;
  let started = false;
  let finished = false;
  const fail = (err) => {
    if (finished) return;
    finished = true;
    call.emit("error", toStatus(err));
  };
  const ask = (callback) =>
    new Promise((resolve, reject) => {
      const callId = String(nextId++);
      pending.set(callId, { resolve, reject });
      call.write({ callback: { call_id: callId, ...callback } });
    });
  const callbacks = {
    async peer(to, text) {
      const result = await ask({ peer_message: { to_identity: to, text } });
      return result.peer_reply.text;
    },
    async tool(name, args) {
      const result = await ask({ tool_call: { name, arguments_json: JSON.stringify(args) } });
      return JSON.parse(result.tool_result.result_json);
    },
    delta(text) {
      call.write({ progress: { text_delta: { text } } });
    },
  };
  call.on("data", (msg) => {
    if (msg.start && !started) {
      started = true;
      runTurn(msg.start, callbacks).then((output) => {
        if (finished) return;
        finished = true;
        call.write({ output });
        call.end();
      }, fail);
    } else if (msg.callback_result) {
      const { call_id: callId, error } = msg.callback_result;
      const waiting = pending.get(callId);
      if (!waiting) {
        fail(new MobKitError("INVALID_ARGUMENT", `no outstanding call '${callId}'`, { field: "callback_result.call_id" }));
        return;
      }
      pending.delete(callId);
      if (error) waiting.reject(new MobKitError(error.reason, error.message, error.metadata || {}));
      else waiting.resolve(msg.callback_result);
    } else {
      fail(new MobKitError("INVALID_ARGUMENT", "the first message of RunTurnStream must be start, sent once", { field: "start" }));
    }
  });
  // The orchestrator went away: nothing more will be answered; the turn fails and
  // its state stays as it was.
  call.on("cancelled", () => {
    finished = true;
    for (const waiting of pending.values()) waiting.reject(new Error("stream cancelled"));
  });
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const definition = protoLoader.loadSync("mobkit/runtime/v1/runtime_service.proto", {
    includeDirs: [args.protos],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    arrays: true,
    objects: true,
    oneofs: true,
  });
  const api = grpc.loadPackageDefinition(definition).mobkit.runtime.v1;
  const info = (s) => ({ session_id: s.sessionId, agent_runtime_id: s.agentRuntimeId, turns: String(s.turns) });
  const server = new grpc.Server();
  server.addService(api.AgentRuntimeService.service, {
    CreateSession: unary((req) => info(createSession(req))),
    ResumeSession: unary((req) => info(resumeSession(req))),
    RunTurn: unary((req) => runTurn(req, null)),
    RunTurnStream: runTurnStream,
    ExportSnapshot: unary((req) => ({ snapshot: snapshot(session(req.session_id)) })),
    CloseSession: unary((req) => {
      sessions.delete(req.session_id);
      return {};
    }),
  });
  const host = args.listen.slice(0, args.listen.lastIndexOf(":"));
  server.bindAsync(args.listen, grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) {
      console.error(`mobkit-runtime-node: cannot listen on ${args.listen}: ${err.message}`);
      process.exit(2);
    }
    console.error(`listening on ${host}:${port}`);
  });
  const stop = () => server.tryShutdown(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main();
