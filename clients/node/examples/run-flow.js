#!/usr/bin/env node
// @ts-check
// Start a run of a flow and follow it to its end.
//
// Usage: node examples/run-flow.js ADDR FLOW [INPUT_JSON] [--request-id ID]
//
// Prints one line per event of the run (`event CURSOR KIND STEP IDENTITY`), then
// `run RUN_ID STATE`, then `output STEP IDENTITY TEXT` per target, and exits 0 when
// the run succeeded, 1 when it failed or was canceled (`failure REASON: message`),
// or when a call fails (`run-flow: REASON: message`), 2 on bad usage.
"use strict";

const { MobKitClient, MobKitError, parseJson } = require("..");

function usage(message) {
  console.error(`run-flow: ${message}`);
  console.error("usage: run-flow.js ADDR FLOW [INPUT_JSON] [--request-id ID]");
  process.exit(2);
}

async function main() {
  const argv = process.argv.slice(2);
  let requestId;
  const positional = [];
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === "--request-id") requestId = argv[++i];
    else if (argv[i].startsWith("--")) usage(`unknown option ${argv[i]}`);
    else positional.push(argv[i]);
  }
  if (positional.length < 2 || positional.length > 3) usage("expected ADDR FLOW [INPUT_JSON]");
  const [address, flowId, inputText] = positional;
  let input;
  if (inputText !== undefined) {
    try {
      input = parseJson(inputText);
    } catch (err) {
      usage(`INPUT_JSON is not JSON: ${err.message}`);
    }
  }
  const client = new MobKitClient(address);
  const timer = setTimeout(() => {
    console.error("run-flow: the run did not end within 60 s");
    process.exit(3);
  }, 60000);
  try {
    const started = await client.startRun(flowId, input, { requestId });
    let final = started;
    for await (const item of client.watchRun(started.run_id)) {
      if (item.event) {
        const e = item.event;
        const data = /** @type {any} */ (e.data) || {};
        console.log(["event", e.cursor, e.kind, data.step_id || "-", e.agent_identity || "-"].join(" "));
      } else {
        final = item.run;
      }
    }
    console.log(`run ${final.run_id} ${final.state}`);
    for (const step of final.steps) {
      for (const result of step.results) console.log(`output ${step.step_id} ${result.identity} ${result.output}`);
    }
    if (final.state !== "RUN_STATE_SUCCEEDED") {
      console.log(`failure ${final.failure.reason}: ${final.failure.message}`);
      process.exitCode = 1;
    }
  } catch (err) {
    if (!(err instanceof MobKitError)) throw err;
    console.error(`run-flow: ${err.reason}: ${err.message}`);
    process.exitCode = 1;
  } finally {
    clearTimeout(timer);
    client.close();
  }
}

main();
