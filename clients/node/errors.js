// @ts-check
// MobKit errors in Node: every failed call carries one google.rpc.ErrorInfo
// (domain "mobkit.dev") inside google.rpc.Status, sent as the binary trailer
// `grpc-status-details-bin`. decodeError turns a grpc-js ServiceError into a
// MobKitError exposing code, reason, domain and metadata — callers branch on
// `reason` ("NOT_ADDRESSABLE", "IDENTITY_NOT_FOUND", ...).
"use strict";

const grpc = require("@grpc/grpc-js");
const protobuf = require("protobufjs");

const DOMAIN = "mobkit.dev";
const ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo";

// Only the wire format matters, so the two google.rpc messages (and Any's two
// fields) are declared inline rather than shipped as .proto files.
const rpcTypes = protobuf.parse(
  `
  syntax = "proto3";
  package google.rpc;
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
`,
  { keepCase: true },
).root;
const Status = rpcTypes.lookupType("google.rpc.Status");
const ErrorInfo = rpcTypes.lookupType("google.rpc.ErrorInfo");

/** @type {Record<number, string>} */
const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, n]) => [n, name]));

class MobKitError extends Error {
  /**
   * @param {object} fields
   * @param {number} fields.code gRPC status code (grpc.status.*)
   * @param {string} fields.message the server's message
   * @param {string} [fields.reason] ErrorInfo reason; absent when the call failed without one
   * @param {string} [fields.domain] ErrorInfo domain ("mobkit.dev")
   * @param {Record<string, string>} [fields.metadata] every dynamic value of the message
   */
  constructor({ code, message, reason, domain, metadata }) {
    super(message);
    this.name = "MobKitError";
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.codeName = CODE_NAMES[code] || String(code);
    /** @type {string} reason, or the code name when the server sent no ErrorInfo */
    this.reason = reason || this.codeName;
    /** @type {string} */
    this.domain = domain || "";
    /** @type {Record<string, string>} */
    this.metadata = metadata || {};
  }
}

/**
 * The MobKit ErrorInfo in a `grpc-status-details-bin` value, or null.
 * @param {Buffer | string | undefined} bin
 * @returns {{reason: string, domain: string, metadata: Record<string, string>} | null}
 */
function errorInfoFromStatusDetails(bin) {
  if (!bin || typeof bin === "string") return null;
  /** @type {any} */
  const status = Status.decode(bin);
  for (const any of status.details || []) {
    if (any.type_url !== ERROR_INFO_TYPE) continue;
    /** @type {any} */
    const info = ErrorInfo.decode(any.value);
    if (info.domain === DOMAIN) {
      return { reason: info.reason, domain: info.domain, metadata: { ...(info.metadata || {}) } };
    }
  }
  return null;
}

/**
 * A grpc-js error as a MobKitError (other errors are returned unchanged).
 * @param {any} err
 * @returns {Error}
 */
function decodeError(err) {
  if (!err || typeof err.code !== "number" || !err.metadata) return err;
  const values = err.metadata.get("grpc-status-details-bin");
  let info = null;
  try {
    info = errorInfoFromStatusDetails(values && values[0]);
  } catch {
    info = null; // undecodable details: keep the code and message
  }
  return new MobKitError({
    code: err.code,
    message: err.details || err.message,
    reason: info ? info.reason : undefined,
    domain: info ? info.domain : undefined,
    metadata: info ? info.metadata : undefined,
  });
}

module.exports = { DOMAIN, MobKitError, decodeError, errorInfoFromStatusDetails };
