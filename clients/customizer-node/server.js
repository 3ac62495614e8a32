#!/usr/bin/env node
// A tiny AgentCustomizerService (mobkit.customizer.v1) in Node.js.
//
// It loads MobKit's .proto files at run time (no code generation), and:
//   * CustomizeBuild adds one instruction and the label `customized-by = node`;
//   * refuses identities starting with "forbidden-" with CUSTOMIZER_FAILED
//     (FAILED_PRECONDITION + one google.rpc.ErrorInfo, domain mobkit.dev, in the
//     grpc-status-details-bin trailer — what MobKit's clients decode);
//   * AfterCreate logs the new session.
// The draft's free-form JSON (`app_context_json`, each tool's `input_schema_json`)
// is JSON text, passed back untouched; to change it, parse and rewrite the text
// (JSON.parse rounds integers beyond 2^53: see clients/node/json.js).
//
// Usage: node server.js [--listen HOST:PORT] [--protos DIR]
// Prints `listening on HOST:PORT` to stderr once it serves. Point an
// orchestrator at it with `--customizer-addr HOST:PORT`.
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const DOMAIN = "mobkit.dev";
const INSTRUCTION = "Keep answers short: a Node.js customizer asked for it.";

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

// google.rpc.Status with google.protobuf.Any details, declared inline: only their
// wire format matters, so one small schema (Any's fields under its own name) suffices.
const rpcTypes = protobuf.parse(`
  syntax = "proto3";
  package google.rpc;
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
`, { keepCase: true }).root;
const Status = rpcTypes.lookupType("google.rpc.Status");
const ErrorInfo = rpcTypes.lookupType("google.rpc.ErrorInfo");

// A gRPC error the way MobKit reports its own: a code, a message, and exactly one
// ErrorInfo whose metadata holds every dynamic value of the message.
function mobkitError(code, reason, message, metadata) {
  const info = ErrorInfo.encode(ErrorInfo.create({ reason, domain: DOMAIN, metadata })).finish();
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

function customizeBuild(call, callback) {
  const { context = {}, draft = {} } = call.request;
  const identity = context.identity || "";
  if (identity.startsWith("forbidden-")) {
    const detail = "identities starting with 'forbidden-' are not built here";
    callback(
      mobkitError(
        grpc.status.FAILED_PRECONDITION,
        "CUSTOMIZER_FAILED",
        `customizer build failed: ${detail}`,
        { identity, detail },
      ),
    );
    return;
  }
  const instructions = draft.additional_instructions || [];
  if (!instructions.includes(INSTRUCTION)) instructions.push(INSTRUCTION);
  const labels = { ...(draft.labels || {}), "customized-by": "node" };
  callback(null, { draft: { ...draft, additional_instructions: instructions, labels } });
}

function afterCreate(call, callback) {
  console.error(`session ${call.request.session_id} created for ${call.request.identity}`);
  callback(null, {});
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const definition = protoLoader.loadSync("mobkit/customizer/v1/customizer_service.proto", {
    includeDirs: [args.protos],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    arrays: true,
    objects: true,
    oneofs: true,
  });
  const api = grpc.loadPackageDefinition(definition).mobkit.customizer.v1;
  const server = new grpc.Server();
  server.addService(api.AgentCustomizerService.service, {
    CustomizeBuild: customizeBuild,
    AfterCreate: afterCreate,
  });
  const host = args.listen.slice(0, args.listen.lastIndexOf(":"));
  server.bindAsync(args.listen, grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) {
      console.error(`mobkit-customizer-node: cannot listen on ${args.listen}: ${err.message}`);
      process.exit(2);
    }
    console.error(`listening on ${host}:${port}`);
  });
  const stop = () => server.tryShutdown(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main();
