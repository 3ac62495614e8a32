// @ts-check
// A small MobKit client for Node.js.
//
// Stubs come from MobKit's own .proto files, loaded at run time with
// @grpc/proto-loader (no code generation step). Results are plain objects in
// the protos' snake_case; 64-bit numbers (cursors, fencing tokens, versions)
// are decimal strings, so nothing loses precision; so are free-form JSON values
// (a receipt's structured_output, an event's data), read from their exact
// `*_json` text with integers beyond 2^53 as BigInt (./json.js). Errors are MobKitError with
// `reason`, `domain` and `metadata` decoded from the ErrorInfo MobKit sends.
//
// As in the Python client: every unary call has a deadline; UNAVAILABLE is
// retried with exponential backoff only for idempotent calls (reads, and
// send/dispatch with an idempotency key); `events()` resumes from its last
// cursor after a disconnect or server restart, without gaps or duplicates.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const { MobKitError, decodeError } = require("./errors");
const { parseJson, stringifyJson } = require("./json");

const DEFAULT_PROTOS = path.join(__dirname, "..", "..", "protos");
const DEFAULT_ADDRESS = "127.0.0.1:7700";
const SERVICES = [
  "mobkit/orchestrator/v1/orchestrator_service.proto",
  "mobkit/lease/v1/lease_service.proto",
  "mobkit/flows/v1/flows_service.proto",
];

/**
 * @typedef {object} ClientOptions
 * @property {string} [protosDir] directory holding mobkit/**.proto (default: the repo's protos/)
 * @property {{ca?: string, cert?: string, key?: string}} [tls] PEM file paths; set to use TLS
 * @property {string} [token] bearer token, sent as `authorization: Bearer <token>`
 * @property {number} [timeoutMs] default deadline of each unary call, retries included (10000)
 * @property {number} [retries] UNAVAILABLE retries of idempotent calls (4)
 * @property {number} [initialBackoffMs] first retry delay (100), doubled up to maxBackoffMs
 * @property {number} [maxBackoffMs] (2000)
 */

/**
 * @typedef {object} DispatchReceipt
 * @property {string} identity
 * @property {string} session_id
 * @property {string} fencing_token
 * @property {string} checkpoint_version
 * @property {string} output
 * @property {unknown} structured_output any JSON value, or null if none
 * @property {string} structured_output_json its exact JSON text ("" if none)
 * @property {string} [correlation_id]
 */

/**
 * @typedef {object} StructuralEvent
 * @property {string} event_id
 * @property {string} cursor
 * @property {string} mob_id
 * @property {string} timestamp_ms
 * @property {string} kind
 * @property {string} [agent_identity]
 * @property {unknown} data any JSON value, or null if none
 * @property {string} data_json its exact JSON text ("" if none)
 */

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * google.protobuf.Value / Struct (as proto-loader decodes them) to plain JSON.
 * @param {any} value
 * @returns {any}
 */
function fromValue(value) {
  if (value == null) return null;
  switch (value.kind) {
    case "nullValue":
      return null;
    case "numberValue":
      return value.numberValue;
    case "stringValue":
      return value.stringValue;
    case "boolValue":
      return value.boolValue;
    case "structValue":
      return fromStruct(value.structValue);
    case "listValue":
      return (value.listValue.values || []).map(fromValue);
    default:
      return null;
  }
}

/**
 * @param {any} struct
 * @returns {Record<string, unknown> | null}
 */
function fromStruct(struct) {
  if (struct == null) return null;
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const [key, value] of Object.entries(struct.fields || {})) out[key] = fromValue(value);
  return out;
}

/**
 * A free-form JSON field: its exact `<name>_json` text when set, else the deprecated
 * Struct (a server older than the text fields).
 * @param {any} message
 * @param {string} name
 * @returns {unknown}
 */
function jsonField(message, name) {
  const text = message[`${name}_json`];
  return text ? parseJson(text) : fromStruct(message[name]);
}

/** @param {any} event */
function structuralEvent(event) {
  return { ...event, data: jsonField(event, "data") };
}

/**
 * A run as the FlowService sends it, with its JSON fields decoded: `input` (the run's
 * input) and, per step result, `structured_output`; states are enum names
 * ("RUN_STATE_SUCCEEDED", "STEP_STATE_RUNNING", ...).
 * @param {any} run
 */
function flowRun(run) {
  return {
    ...run,
    input: run.input_json ? parseJson(run.input_json) : null,
    steps: (run.steps || []).map((/** @type {any} */ step) => ({
      ...step,
      results: (step.results || []).map((/** @type {any} */ r) => ({
        ...r,
        structured_output: r.structured_output_json ? parseJson(r.structured_output_json) : null,
      })),
    })),
  };
}

/** @param {any} turn a TurnTicket, its receipt decoded when it has one */
function turnTicket(turn) {
  return { ...turn, receipt: turn.receipt ? dispatchReceipt(turn.receipt) : null };
}

/** @param {any} receipt @returns {DispatchReceipt} */
function dispatchReceipt(receipt) {
  return { ...receipt, structured_output: jsonField(receipt, "structured_output") };
}

/**
 * @param {string} protosDir
 */
function loadApi(protosDir) {
  const definition = protoLoader.loadSync(SERVICES, {
    includeDirs: [protosDir],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    arrays: true,
    objects: true,
    oneofs: true,
  });
  /** @type {any} */
  const root = grpc.loadPackageDefinition(definition);
  return {
    orchestrator: root.mobkit.orchestrator.v1,
    lease: root.mobkit.lease.v1,
    flows: root.mobkit.flows.v1,
  };
}

/** @param {ClientOptions["tls"]} tls */
function credentials(tls) {
  if (!tls) return grpc.credentials.createInsecure();
  const read = (/** @type {string | undefined} */ file) => (file ? fs.readFileSync(file) : null);
  return grpc.credentials.createSsl(read(tls.ca), read(tls.key), read(tls.cert));
}

class MobKitClient {
  /**
   * @param {string} [address] orchestrator HOST:PORT (default MOBKIT_ADDR or 127.0.0.1:7700)
   * @param {ClientOptions} [options]
   */
  constructor(address, options = {}) {
    this.address = address || process.env.MOBKIT_ADDR || DEFAULT_ADDRESS;
    this.timeoutMs = options.timeoutMs ?? 10000;
    this.retries = options.retries ?? 4;
    this.initialBackoffMs = options.initialBackoffMs ?? 100;
    this.maxBackoffMs = options.maxBackoffMs ?? 2000;
    this._token = options.token;
    const api = loadApi(options.protosDir || DEFAULT_PROTOS);
    const creds = credentials(options.tls);
    const channelOptions = {
      // Reconnect quickly once a restarted server is back (gRPC's default waits up to 120 s).
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 1000,
    };
    /** @type {any} */
    this._orchestrator = new api.orchestrator.OrchestratorService(
      this.address,
      creds,
      channelOptions,
    );
    /** @type {any} */
    this._lease = new api.lease.LeaseService(this.address, creds, channelOptions);
    /** @type {any} */
    this._flows = new api.flows.FlowService(this.address, creds, channelOptions);
  }

  close() {
    this._orchestrator.close();
    this._lease.close();
    this._flows.close();
  }

  _metadata() {
    const metadata = new grpc.Metadata();
    if (this._token) metadata.set("authorization", `Bearer ${this._token}`);
    return metadata;
  }

  /**
   * One unary call with a deadline; UNAVAILABLE retried with backoff when `idempotent`.
   * @param {any} stub
   * @param {string} method
   * @param {object} request
   * @param {{idempotent: boolean, timeoutMs?: number}} how
   * @returns {Promise<any>}
   */
  async _unary(stub, method, request, { idempotent, timeoutMs }) {
    const deadline = Date.now() + (timeoutMs ?? this.timeoutMs);
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await new Promise((resolve, reject) => {
          /** @param {any} err @param {any} reply */
          const done = (err, reply) => (err ? reject(err) : resolve(reply));
          stub[method](request, this._metadata(), { deadline }, done);
        });
      } catch (err) {
        const e = /** @type {any} */ (err);
        const delay = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** attempt);
        const retry =
          idempotent &&
          e.code === grpc.status.UNAVAILABLE &&
          attempt < this.retries &&
          Date.now() + delay < deadline;
        if (!retry) throw decodeError(e);
        await sleep(delay);
      }
    }
  }

  /**
   * Run a turn on an addressable identity.
   * @param {string} identity
   * @param {string} text
   * @param {{idempotencyKey?: string, correlationId?: string, timeoutMs?: number}} [opts]
   * @returns {Promise<DispatchReceipt>}
   */
  async send(identity, text, opts = {}) {
    const reply = await this._unary(
      this._orchestrator,
      "Send",
      { identity, input: this._input(text, "DISPATCH_ORIGIN_SYSTEM", opts) },
      { idempotent: Boolean(opts.idempotencyKey), timeoutMs: opts.timeoutMs },
    );
    return dispatchReceipt(reply.receipt);
  }

  /**
   * As send, but internal-only identities are reachable too.
   * @param {string} identity
   * @param {string} text
   * @param {{origin?: string, idempotencyKey?: string, correlationId?: string, timeoutMs?: number}} [opts]
   *   origin: CONNECTOR, SCHEDULER, POLICY, FLOW or SYSTEM
   * @returns {Promise<DispatchReceipt>}
   */
  async dispatch(identity, text, opts = {}) {
    const origin = `DISPATCH_ORIGIN_${(opts.origin || "SYSTEM").toUpperCase()}`;
    const reply = await this._unary(
      this._orchestrator,
      "Dispatch",
      { identity, input: this._input(text, origin, opts) },
      { idempotent: Boolean(opts.idempotencyKey), timeoutMs: opts.timeoutMs },
    );
    return dispatchReceipt(reply.receipt);
  }

  /**
   * @param {string} text
   * @param {string} origin
   * @param {{idempotencyKey?: string, correlationId?: string}} opts
   */
  _input(text, origin, opts) {
    /** @type {Record<string, unknown>} */
    const input = { content: { text }, origin };
    if (opts.idempotencyKey) input.idempotency_key = opts.idempotencyKey;
    if (opts.correlationId) input.correlation_id = opts.correlationId;
    return input;
  }

  /**
   * One identity's status (state is e.g. "IDENTITY_LIFECYCLE_STATE_ACTIVE").
   * @param {string} identity
   */
  async status(identity) {
    const reply = await this._unary(
      this._orchestrator,
      "GetIdentityStatus",
      { identity },
      { idempotent: true },
    );
    return reply.status;
  }

  /**
   * Every status, ordered by identity, fetching pages as it goes.
   * @param {{state?: string, labels?: Record<string, string>, pageSize?: number}} [opts]
   */
  async *listStatuses(opts = {}) {
    let token = "";
    do {
      /** @type {Record<string, unknown>} */
      const request = {
        page_size: opts.pageSize || 0,
        page_token: token,
        label_selector: opts.labels || {},
      };
      if (opts.state) request.state = `IDENTITY_LIFECYCLE_STATE_${opts.state.toUpperCase()}`;
      const reply = await this._unary(this._orchestrator, "ListIdentityStatuses", request, {
        idempotent: true,
      });
      yield* reply.statuses;
      token = reply.next_page_token;
    } while (token);
  }

  /**
   * Every held lease (LeaseService.ListLeases), ordered by identity.
   */
  async *leases() {
    let token = "";
    do {
      const reply = await this._unary(
        this._lease,
        "ListLeases",
        { page_size: 0, page_token: token },
        { idempotent: true },
      );
      yield* reply.leases;
      token = reply.next_page_token;
    } while (token);
  }

  /**
   * A turn streamed as it happens: yields `{ progress }` items (`progress.text_delta`,
   * `tool_call_started`, `tool_call_finished`), then one `{ receipt }`. Leaving the
   * loop early does not stop the turn.
   * @param {string} identity
   * @param {string} text
   * @param {{dispatch?: boolean, idempotencyKey?: string, correlationId?: string}} [opts]
   */
  async *sendStream(identity, text, opts = {}) {
    const request = { identity, input: this._input(text, "DISPATCH_ORIGIN_SYSTEM", opts) };
    const call = opts.dispatch
      ? this._orchestrator.DispatchStream(request, this._metadata())
      : this._orchestrator.SendStream(request, this._metadata());
    try {
      for await (const reply of call) {
        if (reply.item === "receipt") yield { receipt: dispatchReceipt(reply.receipt) };
        else yield { progress: reply.progress };
      }
    } catch (err) {
      throw decodeError(/** @type {any} */ (err));
    } finally {
      call.cancel();
    }
  }

  /**
   * Accept a turn and return its ticket at once (state "TURN_STATE_PENDING"); with an
   * idempotencyKey the call is retried on UNAVAILABLE and answers the same ticket.
   * @param {string} identity
   * @param {string} text
   * @param {{dispatch?: boolean, idempotencyKey?: string, correlationId?: string}} [opts]
   */
  async submitTurn(identity, text, opts = {}) {
    const request = {
      identity,
      input: this._input(text, "DISPATCH_ORIGIN_SYSTEM", opts),
      dispatch: Boolean(opts.dispatch),
    };
    const reply = await this._unary(this._orchestrator, "SubmitTurn", request, {
      idempotent: Boolean(opts.idempotencyKey),
    });
    return turnTicket(reply.turn);
  }

  /** @param {string} turnId */
  async getTurn(turnId) {
    const reply = await this._unary(this._orchestrator, "GetTurn", { turn_id: turnId }, { idempotent: true });
    return turnTicket(reply.turn);
  }

  /**
   * The finished ticket, as a last `{ turn }` item; with `{ progress: true }`, the turn's
   * `{ progress }` items before it (relayed from the turn's owner by any replica).
   * @param {string} turnId
   * @param {{progress?: boolean}} [opts]
   */
  async *watchTurn(turnId, opts = {}) {
    const request = { turn_id: turnId, after_seq: "0", progress: Boolean(opts.progress) };
    const call = this._orchestrator.WatchTurn(request, this._metadata());
    try {
      for await (const reply of call) {
        if (reply.item === "event") yield { event: structuralEvent(reply.event) };
        else if (reply.item === "progress") yield { progress: reply.progress };
        else yield { turn: turnTicket(reply.turn) };
      }
    } catch (err) {
      throw decodeError(/** @type {any} */ (err));
    } finally {
      call.cancel();
    }
  }

  /** The roster's flows (FlowService.ListFlows). */
  async listFlows() {
    const flows = [];
    let token = "";
    do {
      const request = { page_size: 1000, page_token: token };
      const reply = await this._unary(this._flows, "ListFlows", request, { idempotent: true });
      flows.push(...reply.flows);
      token = reply.next_page_token;
    } while (token);
    return flows;
  }

  /**
   * Start a run of a flow. With a requestId the start is retried on UNAVAILABLE: the
   * same id answers the run it started.
   * @param {string} flowId
   * @param {unknown} [input] any JSON value (BigInt for integers beyond 2^53)
   * @param {{requestId?: string, labels?: Record<string, string>, timeoutMs?: number}} [opts]
   */
  async startRun(flowId, input, opts = {}) {
    /** @type {Record<string, unknown>} */
    const request = { flow_id: flowId, request_id: opts.requestId || "", labels: opts.labels || {} };
    if (input !== undefined) request.input_json = stringifyJson(input);
    const reply = await this._unary(this._flows, "StartRun", request, {
      idempotent: Boolean(opts.requestId),
      timeoutMs: opts.timeoutMs,
    });
    return flowRun(reply.run);
  }

  /** @param {string} runId */
  async getRun(runId) {
    const reply = await this._unary(this._flows, "GetRun", { run_id: runId }, { idempotent: true });
    return flowRun(reply.run);
  }

  /** @param {string} runId */
  async cancelRun(runId) {
    const reply = await this._unary(this._flows, "CancelRun", { run_id: runId }, { idempotent: true });
    return flowRun(reply.run);
  }

  /**
   * Every matching run, oldest first, fetching pages as it goes.
   * @param {{flowId?: string, states?: string[], labels?: Record<string, string>}} [opts]
   *   states: "running", "succeeded", "failed", "canceled"
   */
  async *listRuns(opts = {}) {
    let token = "";
    do {
      const request = {
        flow_id: opts.flowId || "",
        states: (opts.states || []).map((s) => `RUN_STATE_${s.toUpperCase()}`),
        labels: opts.labels || {},
        page_size: 0,
        page_token: token,
      };
      const reply = await this._unary(this._flows, "ListRuns", request, { idempotent: true });
      yield* reply.runs.map(flowRun);
      token = reply.next_page_token;
    } while (token);
  }

  /**
   * A run's events, then the finished run: yields `{event}` items, then one `{run}`.
   * @param {string} runId
   * @param {{afterSeq?: string | number}} [opts]
   */
  async *watchRun(runId, opts = {}) {
    const call = this._flows.WatchRun(
      { run_id: runId, after_seq: String(opts.afterSeq ?? 0) },
      this._metadata(),
    );
    try {
      for await (const reply of call) {
        if (reply.item === "event") yield { event: structuralEvent(reply.event) };
        else yield { run: flowRun(reply.run) };
      }
    } catch (err) {
      throw decodeError(/** @type {any} */ (err));
    } finally {
      call.cancel();
    }
  }

  /**
   * Follow structural events with cursor > afterSeq: catch-up, then live. When the
   * stream breaks (UNAVAILABLE: server restarted or shutting down) it reopens from
   * the last cursor it yielded, so each event comes once and none is skipped.
   * Gives up after `reconnectTimeoutMs` without a working stream.
   * @param {{afterSeq?: string | number, reconnectTimeoutMs?: number,
   *          onReconnect?: (cursor: string, err: Error | null) => void}} [opts]
   * @returns {AsyncGenerator<StructuralEvent>}
   */
  async *events(opts = {}) {
    let cursor = BigInt(opts.afterSeq ?? 0);
    const reconnectTimeoutMs = opts.reconnectTimeoutMs ?? 60000;
    let failures = 0;
    let failingSince = 0;
    for (;;) {
      const opened = Date.now();
      const call = this._orchestrator.WatchEvents(
        { after_seq: cursor.toString(), include_runtime_events: false },
        this._metadata(),
      );
      /** @type {any} */
      let error = null;
      try {
        for await (const reply of call) {
          if (reply.event !== "structural") continue;
          const next = BigInt(reply.structural.cursor);
          if (next <= cursor) continue;
          cursor = next;
          failures = 0;
          failingSince = 0;
          yield structuralEvent(reply.structural);
        }
      } catch (err) {
        const e = /** @type {any} */ (err);
        if (e.code !== grpc.status.UNAVAILABLE) throw decodeError(e);
        error = e;
      } finally {
        call.cancel();
      }
      const now = Date.now();
      if (now - opened > this.maxBackoffMs) failures = 0; // it was up for a while
      if (!failures) failingSince = now;
      if (now - failingSince >= reconnectTimeoutMs) {
        throw error
          ? decodeError(error)
          : new MobKitError({ code: grpc.status.UNAVAILABLE, message: "event stream keeps ending" });
      }
      if (opts.onReconnect) opts.onReconnect(cursor.toString(), error ? decodeError(error) : null);
      await sleep(Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** failures));
      failures += 1;
    }
  }
}

module.exports = {
  MobKitClient,
  MobKitError,
  decodeError,
  fromStruct,
  parseJson,
  stringifyJson,
  DEFAULT_ADDRESS,
};
