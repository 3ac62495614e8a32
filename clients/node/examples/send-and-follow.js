#!/usr/bin/env node
// @ts-check
// Send a message to an identity, then follow the event log.
//
// Usage: node examples/send-and-follow.js ADDR IDENTITY TEXT [--events N] [--timeout-ms MS] [--key K]
//
// Prints the receipt, the agent's output and its structured output (exact JSON,
// when the turn has one), then the first N structural events (default 3) from the
// start of the log, and exits 0. Exits 1 with
// `send-and-follow: REASON: message` (ErrorInfo decoded from
// grpc-status-details-bin) if a call fails, 3 if N events did not arrive within
// --timeout-ms (default 20000), 2 on bad usage.
"use strict";

const { MobKitClient, MobKitError, stringifyJson } = require("..");

function usage(message) {
  console.error(`send-and-follow: ${message}`);
  console.error(
    "usage: send-and-follow.js ADDR IDENTITY TEXT [--events N] [--timeout-ms MS] [--key K]",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const positional = [];
  const opts = { events: 3, timeoutMs: 20000, key: undefined };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (!arg.startsWith("--")) {
      positional.push(arg);
      continue;
    }
    const value = argv[++i];
    if (value === undefined) usage(`${arg} needs a value`);
    if (arg === "--events") opts.events = Number(value);
    else if (arg === "--timeout-ms") opts.timeoutMs = Number(value);
    else if (arg === "--key") opts.key = value;
    else usage(`unknown option ${arg}`);
  }
  if (positional.length !== 3) usage("expected ADDR IDENTITY TEXT");
  if (!(opts.events >= 0) || !(opts.timeoutMs > 0)) usage("--events and --timeout-ms must be numbers");
  const [address, identity, text] = positional;
  return { address, identity, text, ...opts };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const client = new MobKitClient(args.address, { timeoutMs: Math.min(args.timeoutMs, 10000) });
  // The whole run is bounded: a stuck stream must not keep the process alive.
  const bound = setTimeout(() => {
    console.error(`send-and-follow: fewer than ${args.events} events within ${args.timeoutMs} ms`);
    process.exit(3);
  }, args.timeoutMs);
  try {
    const receipt = await client.send(args.identity, args.text, { idempotencyKey: args.key });
    console.log(
      `receipt identity=${receipt.identity} session=${receipt.session_id} ` +
        `fencing_token=${receipt.fencing_token} checkpoint=${receipt.checkpoint_version}`,
    );
    console.log(`output ${receipt.output}`);
    if (receipt.structured_output !== null) {
      console.log(`structured ${stringifyJson(receipt.structured_output)}`);
    }
    let seen = 0;
    if (args.events > 0) {
      for await (const event of client.events({ afterSeq: 0 })) {
        const who = event.agent_identity ? ` ${event.agent_identity}` : "";
        console.log(`event ${event.cursor} ${event.kind}${who} ${stringifyJson(event.data)}`);
        seen += 1;
        if (seen >= args.events) break;
      }
    }
    console.log(`done: ${seen} events`);
  } catch (err) {
    if (err instanceof MobKitError) {
      console.error(
        `send-and-follow: ${err.reason}: ${err.message} ` +
          `(code ${err.codeName}, domain ${err.domain || "-"}, metadata ${JSON.stringify(err.metadata)})`,
      );
      process.exitCode = 1;
    } else {
      throw err;
    }
  } finally {
    clearTimeout(bound);
    client.close();
  }
}

main().catch((err) => {
  console.error(`send-and-follow: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
