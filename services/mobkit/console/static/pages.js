// One function per page: it builds its frame once and returns { refresh, leave }.
// refresh() re-reads the page's JSON and redraws; the shell calls it on every event.
import { api, apiLines, can, confirmAction, el, onEvent, title } from "./console.js";

const LIFECYCLE = ["suspend", "resume", "retire", "reset"];
const STATE_COLORS = {
  active: "#1f7a3a", suspended: "#c98a00", broken: "#b3261e", dormant: "#8a939c",
  retiring: "#6b3fa0", uninitialized: "#c4cad0",
};
const PALETTE = ["#1565c0", "#ef6c00", "#00838f", "#ad1457", "#558b2f", "#4527a0", "#6d4c41"];

const link = (identity) => el("a", { href: `#/identity/${encodeURIComponent(identity)}` }, identity);
const stateCell = (state) => el("span", { class: `state state-${state}` }, title(state));

function failureOf(s) {
  if (s.failure) return `${s.failure.kind}: ${s.failure.detail}`;
  if (s.activation_failure) return `${s.activation_failure.reason}: ${s.activation_failure.message}`;
  return "";
}

function health(s) {
  const h = s.continuity_health;
  if (!h) return "-";
  return `${h.store_reachable ? "reachable" : "unreachable"}, ${h.durability_policy}`;
}

function ownerColor(replica, replicas) {
  const index = replicas.indexOf(replica);
  return index < 0 ? "#c4cad0" : PALETTE[index % PALETTE.length];
}

function fleet(root) {
  const state = el("select", { id: "filter-state" }, el("option", { value: "" }, "every state"),
    ...Object.keys(STATE_COLORS).map((s) => el("option", { value: s }, title(s))));
  const label = el("input", { id: "filter-label", placeholder: "label: key=value" });
  const counts = el("div", { class: "counts", id: "counts" });
  const replicas = el("div", { class: "replicas", id: "replicas" });
  const body = el("tbody", { id: "fleet-rows" });
  const table = el("table", {}, el("thead", {}, el("tr", {}, ...["identity", "state", "owner replica", "fencing token",
    "checkpoint", "continuity", "labels", "failure"].map((h) => el("th", {}, h)))), body);
  const refresh = async () => {
    const query = new URLSearchParams();
    if (state.value) query.set("state", state.value);
    if (label.value.trim()) query.append("label", label.value.trim());
    const data = await api(`/api/fleet?${query}`);
    counts.replaceChildren("By state: ", ...Object.entries(data.counts).map(([s, n]) =>
      el("span", { "data-state": s }, `${title(s)} ${n}`)));
    replicas.replaceChildren("Replicas: ", ...(data.replicas.length ? data.replicas.map((r) =>
      el("span", { "data-replica": r.replica }, `${r.replica}: ${r.owned} owned`)) : ["none"]));
    body.replaceChildren(...data.identities.map((s) => el("tr", { "data-identity": s.identity },
      el("td", {}, link(s.identity)), el("td", { class: "state-cell" }, stateCell(s.state)),
      el("td", { class: "owner", title: s.owner || "" }, s.replica || "-"),
      el("td", { class: "token" }, s.lease ? s.lease.fencing_token : "-"),
      el("td", {}, s.checkpoint_version ?? "-"), el("td", {}, health(s)),
      el("td", {}, Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(" ")),
      el("td", { class: "error" }, failureOf(s)))));
  };
  state.addEventListener("change", refresh);
  label.addEventListener("change", refresh);
  root.append(el("h1", {}, "Fleet"), counts, replicas, el("div", { class: "filters" }, state, label), table);
  return { refresh };
}

function identity(root, [name]) {
  const status = el("dl", { id: "identity-status" });
  const peers = el("ul", { id: "peers" });
  const tools = el("ul", { id: "tools" });
  const turns = el("tbody", { id: "turns" });
  const actions = el("div", { class: "actions", id: "actions" });
  const error = el("p", { class: "error", id: "action-error" });
  root.append(el("h1", {}, name), el("section", {}, status), actions, error);
  if (can("send") || can("dispatch")) {
    const text = el("textarea", { id: "message", placeholder: "a message" });
    const reply = el("pre", { id: "reply" });
    const run = (dispatch) => async () => {
      reply.textContent = "";
      reply.dataset.done = "";
      try {
        await apiLines(`/api/identities/${encodeURIComponent(name)}/${dispatch ? "dispatch" : "send"}`, { text: text.value }, (line) => {
          if (line.progress && line.progress.kind === "delta") reply.textContent += line.progress.text;
          if (line.receipt) reply.textContent = line.receipt.output;
          if (line.error) reply.textContent = `${line.error.reason}: ${line.error.message}`;
        });
      } catch (e) {
        reply.textContent = e.message;
      }
      reply.dataset.done = "1";
    };
    root.append(el("section", {}, el("h2", {}, "Message"), text,
      can("send") ? el("button", { id: "send", onclick: run(false) }, "Send") : null,
      can("dispatch") ? el("button", { id: "dispatch", onclick: run(true) }, "Dispatch") : null, reply));
  }
  for (const action of LIFECYCLE.filter(can)) {
    actions.append(el("button", { "data-action": action, onclick: async () => {
      if (!(await confirmAction(`${title(action)} ${name}?`))) return;
      try {
        await api(`/api/identities/${encodeURIComponent(name)}/${action}`, { method: "POST" });
        error.textContent = "";
        await refresh();
      } catch (e) { error.textContent = e.message; }
    } }, title(action)));
  }
  root.append(el("section", {}, el("h2", {}, "Peers"), peers), el("section", {}, el("h2", {}, "Tools"), tools),
    el("section", {}, el("h2", {}, "Recent turns"), el("table", {}, el("thead", {}, el("tr", {},
      ...["cursor", "when", "checkpoint", "origin", "correlation"].map((h) => el("th", {}, h)))), turns)));
  const refresh = async () => {
    const data = await api(`/api/identities/${encodeURIComponent(name)}`);
    const s = data.status;
    const rows = [["state", stateCell(s.state)], ["owner", s.owner || "-"], ["fencing token", s.lease ? s.lease.fencing_token : "-"],
      ["generation", s.generation ?? "-"], ["checkpoint", s.checkpoint_version ?? "-"], ["session", s.session_id || "-"],
      ["continuity", health(s)], ["addressability", s.addressability], ["profile", s.profile || "-"], ["failure", failureOf(s) || "-"]];
    status.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k }, v)]));
    peers.replaceChildren(...(data.peers.length ? data.peers.map((p) => el("li", {}, link(p))) : [el("li", { class: "muted" }, "none")]));
    tools.replaceChildren(...(data.tools.length ? data.tools.map((t) => el("li", {}, t)) : [el("li", { class: "muted" }, "none")]));
    turns.replaceChildren(...data.turns.map((e) => el("tr", {}, el("td", {}, e.cursor), el("td", {}, new Date(e.timestamp_ms).toISOString()),
      el("td", {}, e.data.checkpoint_version), el("td", {}, e.data.origin), el("td", {}, e.data.correlation_id || "-"))));
  };
  return { refresh };
}

function topology(root) {
  const graph = el("div", { id: "graph" });
  const legend = el("p", { class: "legend" });
  root.append(el("h1", {}, "Topology"), legend, graph);
  let cy = null;
  const refresh = async () => {
    const data = await api("/api/topology");
    const replicas = [...new Set(data.nodes.map((n) => n.replica).filter(Boolean))].sort();
    legend.replaceChildren("Fill: state. Border: owner replica (", ...replicas.map((r) =>
      el("span", { style: `color:${ownerColor(r, replicas)}` }, r)), ").");
    const elements = [
      ...data.nodes.map((n) => ({ data: { id: n.identity, state: n.state, fill: STATE_COLORS[n.state] || "#999", border: ownerColor(n.replica, replicas) } })),
      ...data.edges.map((e) => ({ data: { id: `${e.a}--${e.b}`, source: e.a, target: e.b } })),
    ];
    if (cy) cy.destroy();
    cy = window.cytoscape({ container: graph, elements, layout: { name: data.nodes.length > 30 ? "cose" : "circle", animate: false },
      style: [
        { selector: "node", style: { label: "data(id)", "background-color": "data(fill)", "border-color": "data(border)", "border-width": 4 } },
        { selector: "edge", style: { width: 2, "line-color": "#b0b8c1" } },
      ] });
    cy.on("tap", "node", (event) => { location.hash = `#/identity/${encodeURIComponent(event.target.id())}`; });
    graph.dataset.nodes = String(data.nodes.length);
    graph.dataset.edges = String(data.edges.length);
  };
  return { refresh, leave: () => cy && cy.destroy() };
}

function events(root) {
  const kind = el("input", { id: "filter-kind", placeholder: "kind (e.g. activated)" });
  const who = el("input", { id: "filter-identity", placeholder: "identity" });
  const from = el("input", { id: "from-cursor", placeholder: "from cursor" });
  const body = el("tbody", { id: "event-rows" });
  let shown = [];
  const matches = (e) => (!kind.value || e.kind.includes(kind.value)) && (!who.value || e.agent_identity === who.value);
  const row = (e) => el("tr", { "data-cursor": e.cursor }, el("td", {}, e.cursor), el("td", {}, new Date(e.timestamp_ms).toISOString()),
    el("td", {}, e.kind), el("td", {}, e.agent_identity || "-"), el("td", {}, JSON.stringify(e.data)));
  const draw = () => body.replaceChildren(...shown.filter(matches).slice(-500).reverse().map(row));
  const load = async () => {
    const after = from.value.trim();
    const data = await api(after ? `/api/events?after=${encodeURIComponent(after)}` : "/api/events");
    shown = data.events;
    draw();
  };
  const stop = onEvent((e) => {
    if (shown.length && shown[shown.length - 1].cursor >= e.cursor) return;
    shown.push(e);
    if (shown.length > 2000) shown = shown.slice(-2000);
    draw();
  });
  for (const input of [kind, who]) input.addEventListener("input", draw);
  from.addEventListener("change", load);
  root.append(el("h1", {}, "Events"), el("div", { class: "filters" }, kind, who, from),
    el("table", {}, el("thead", {}, el("tr", {}, ...["cursor", "when", "kind", "identity", "data"].map((h) => el("th", {}, h)))), body));
  let loaded = false;
  // Live events are appended as they come; the first refresh loads the recent ones.
  return { refresh: async () => { if (!loaded) { loaded = true; await load(); } }, leave: stop };
}

function modules(root) {
  const body = el("tbody", { id: "module-rows" });
  root.append(el("h1", {}, "Modules"), el("table", {}, el("thead", {}, el("tr", {},
    ...["module", "health", "required", "restarts", "tools", "detail"].map((h) => el("th", {}, h)))), body));
  const refresh = async () => {
    const data = await api("/api/modules");
    body.replaceChildren(...(data.modules.length ? data.modules.map((m) => el("tr", { "data-module": m.id },
      el("td", {}, m.id), el("td", { class: `state state-${m.state === "healthy" ? "active" : "broken"}` }, m.state),
      el("td", {}, m.required ? "yes" : "no"), el("td", {}, m.restart_count), el("td", {}, m.tools.join(", ")),
      el("td", {}, m.detail))) : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "no modules"))]));
  };
  return { refresh };
}

function flows(root) {
  const defs = el("tbody", { id: "flow-rows" });
  const runs = el("tbody", { id: "run-rows" });
  root.append(el("h1", {}, "Flows"), el("table", {}, el("thead", {}, el("tr", {}, ...["flow", "steps", "description"].map((h) => el("th", {}, h)))), defs),
    el("h2", {}, "Runs"), el("table", {}, el("thead", {}, el("tr", {}, ...["run", "flow", "state", "steps", "updated", "failure"].map((h) => el("th", {}, h)))), runs));
  const refresh = async () => {
    const data = await api("/api/flows");
    defs.replaceChildren(...data.flows.map((f) => el("tr", { "data-flow": f.flow_id }, el("td", {}, f.flow_id),
      el("td", {}, f.steps.map((s) => `${s.step_id} (${s.target.identity || JSON.stringify(s.target)})`).join(", ")), el("td", {}, f.description || ""))));
    runs.replaceChildren(...(data.runs.length ? data.runs.map((r) => el("tr", { "data-run": r.run_id }, el("td", {}, r.run_id), el("td", {}, r.flow_id),
      el("td", {}, r.state), el("td", {}, Object.entries(r.steps).map(([k, v]) => `${k}: ${v.state}`).join(", ")),
      el("td", {}, new Date(r.updated_ms).toISOString()), el("td", { class: "error" }, r.failure ? JSON.stringify(r.failure) : ""))) :
      [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "no runs"))]));
  };
  return { refresh };
}

export const PAGES = { fleet, identity, topology, events, modules, flows };
