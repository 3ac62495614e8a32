// @ts-check
// MobKit's free-form JSON fields (`*_json`: a receipt's structured output, an
// event's data) read and written exactly.
//
// JSON.parse turns every number into a double, so 2^53+1 comes back rounded.
// parseJson keeps an integer that a double cannot hold exactly as a BigInt, and
// every other number as a Number; stringifyJson writes BigInts back as plain
// JSON integers. Everything else is standard JSON.
"use strict";

/** @typedef {null | boolean | number | bigint | string | JsonValue[] | {[key: string]: JsonValue}} JsonValue */

const MAX_DEPTH = 128; // MobKit's bound (serde_json's), so hostile text cannot exhaust the stack
const INTEGER = /^-?(0|[1-9][0-9]*)$/;
const NUMBER = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

/**
 * @param {string} text JSON text
 * @returns {JsonValue}
 */
function parseJson(text) {
  let at = 0;
  const fail = (/** @type {string} */ what) => {
    throw new SyntaxError(`invalid JSON at ${at}: ${what}`);
  };
  const space = () => {
    while (at < text.length && " \t\n\r".includes(text[at])) at += 1;
  };
  /** @returns {string} */
  const string = () => {
    // The literal, quotes included, is valid JSON for JSON.parse to unescape.
    const start = at;
    at += 1;
    while (at < text.length && text[at] !== '"') at += text[at] === "\\" ? 2 : 1;
    if (at >= text.length) fail("unterminated string");
    at += 1;
    return JSON.parse(text.slice(start, at));
  };
  /** @param {number} depth @returns {JsonValue} */
  const value = (depth) => {
    space();
    const c = text[at];
    if (c === "{" || c === "[") {
      if (depth >= MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH} levels`);
      at += 1;
      space();
      const close = c === "{" ? "}" : "]";
      /** @type {any} */
      const out = c === "{" ? {} : [];
      if (text[at] === close) {
        at += 1;
        return out;
      }
      for (;;) {
        if (c === "{") {
          space();
          if (text[at] !== '"') fail("expected a key");
          const key = string();
          space();
          if (text[at] !== ":") fail("expected ':'");
          at += 1;
          Object.defineProperty(out, key, {
            value: value(depth + 1),
            enumerable: true,
            writable: true,
            configurable: true,
          }); // not `out[key] =`: a key "__proto__" is data, not the prototype
        } else {
          out.push(value(depth + 1));
        }
        space();
        if (text[at] === ",") at += 1;
        else if (text[at] === close) {
          at += 1;
          return out;
        } else fail(`expected ',' or '${close}'`);
      }
    }
    if (c === '"') return string();
    for (const [word, literal] of /** @type {const} */ ([["true", true], ["false", false], ["null", null]])) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return literal;
      }
    }
    NUMBER.lastIndex = at;
    const match = NUMBER.exec(text);
    if (!match) return fail("expected a value");
    at += match[0].length;
    const number = Number(match[0]);
    if (!Number.isFinite(number)) fail("number out of range");
    if (INTEGER.test(match[0]) && !Number.isSafeInteger(number)) return BigInt(match[0]);
    return number;
  };
  const out = value(0);
  space();
  if (at !== text.length) fail("trailing characters");
  return out;
}

/**
 * @param {JsonValue} value
 * @returns {string}
 */
function stringifyJson(value) {
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) return `[${value.map(stringifyJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const members = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${stringifyJson(v)}`);
    return `{${members.join(",")}}`;
  }
  return JSON.stringify(value);
}

module.exports = { parseJson, stringifyJson, MAX_DEPTH };
