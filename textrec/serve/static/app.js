// The textrec page: talks to the same server's JSON API only (no other network).
"use strict";
const $ = (id) => document.getElementById(id);
let models = [];
let lastRecs = { user: null, history: null };

function current() { return models.find((m) => m.name === $("model").value) || models[0]; }

function showError(msg) {
  const e = $("error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

async function api(method, path, body, headers) {
  const opts = { method, headers: Object.assign({ "Content-Type": "application/json" }, headers || {}) };
  if (body !== undefined) opts.body = JSON.stringify(body);
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (_) { data = { detail: r.statusText }; }
  if (!r.ok) throw new Error((data && data.detail) || ("HTTP " + r.status));
  return data;
}

function who() {
  const user = $("user").value.trim();
  const hist = $("history").value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
  if (hist.length) return { history: hist };
  if (user) return { user };
  throw new Error("type a user id or a history of item ids");
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function itemLine(li, it) {
  li.appendChild(el("span", it.title, "title"));
  li.appendChild(el("span", " [" + it.item_id + "]", "id"));
  if (it.score !== null && it.score !== undefined) li.appendChild(el("span", it.score.toFixed(3), "score"));
}

function showInfo() {
  const m = current();
  const c = m.capabilities;
  $("model-info").textContent = `${m.model_type} · ${m.n_items} items · ${m.n_users} users` +
    (c.explain ? " · explanations" : " · no explainer") + (c.query ? ` · queries (${m.query_method})` : "");
}

function applyCapabilities() {
  const m = current();
  if (!m) return;
  const c = m.capabilities;
  showInfo();
  $("user-row").hidden = !c.users;
  $("query-btn").hidden = !c.query;
  $("add-panel").hidden = !c.add_items;
  const dl = $("user-examples");
  dl.replaceChildren(...m.example_users.map((u) => { const o = el("option"); o.value = u; return o; }));
  if (c.users && !$("user").value && m.example_users.length) $("user").placeholder = "e.g. " + m.example_users[0];
  $("explain-panel").hidden = true;
}

async function loadModels() {
  const h = await api("GET", "/health");
  models = h.models;
  $("model").replaceChildren(...models.map((m) => { const o = el("option", m.name); o.value = m.name; return o; }));
  applyCapabilities();
}

async function recommend(highlightId) {
  showError("");
  try {
    const body = Object.assign({ model: current().name, k: parseInt($("k").value, 10) || 10,
                                 exclude_history: $("exclude").checked }, who());
    const r = await api("POST", "/recommend", body);
    lastRecs = body;
    $("recs-for").textContent = (r.user ? `for user ${r.user}, ` : "for the history, ") +
      "who had: " + r.history.map((h) => h.title).slice(-5).join(" · ");
    const canExplain = current().capabilities.explain && r.user;
    $("recs").replaceChildren(...r.items.map((it) => {
      const li = el("li");
      itemLine(li, it);
      if (it.item_id === highlightId) li.classList.add("new");
      if (canExplain) {
        const b = el("button", "why?");
        b.type = "button";
        b.addEventListener("click", () => explain(r.user, it));
        li.appendChild(b);
      }
      return li;
    }));
    $("recs-section").hidden = false;
  } catch (e) { showError(e.message); }
}

function words(s) { return new Set((s.toLowerCase().match(/[a-z0-9']+/g) || []).filter((w) => w.length > 3)); }

function highlighted(text, keep) {
  const frag = document.createDocumentFragment();
  for (const part of text.split(/(\s+)/)) {
    const w = part.toLowerCase().replace(/[^a-z0-9']/g, "");
    frag.appendChild(keep.has(w) ? el("mark", part) : document.createTextNode(part));
  }
  return frag;
}

async function explain(user, item) {
  showError("");
  try {
    const r = await api("POST", "/explain", { model: current().name, user, item: item.item_id });
    $("explain-item").textContent = r.item.title;
    $("explanation").textContent = r.explanation;
    $("explain-rating").textContent = r.rating.toFixed(2);
    $("explain-aspects").textContent = r.aspects.join(", ") || "(none)";
    const keep = words(r.explanation);
    $("cited").replaceChildren(...(r.cited.length ? r.cited.map((c) => {
      const li = el("li");
      li.className = "cited";
      li.appendChild(highlighted(c.text, keep));
      li.appendChild(el("span", ` (sentence ${c.sentence_id}, review by ${c.review_user} of ${c.review_item})`, "muted"));
      return li;
    }) : [el("li", "(no sentence shares words with this explanation)", "muted")]));
    $("explain-panel").hidden = false;
  } catch (e) { showError(e.message); }
}

async function writeQuery() {
  showError("");
  try {
    const r = await api("POST", "/query", Object.assign({ model: current().name, k: parseInt($("k").value, 10) || 10 }, who()));
    $("query-text").textContent = r.query;
    $("query-method").textContent = "(" + r.method + ")";
    $("query-items").replaceChildren(...r.items.map((it) => { const li = el("li"); itemLine(li, it); return li; }));
    $("query-panel").hidden = false;
  } catch (e) { showError(e.message); }
}

async function search() {
  showError("");
  const q = $("search").value.trim();
  if (!q) return;
  try {
    const items = await api("GET", `/items?q=${encodeURIComponent(q)}&k=12&model=${encodeURIComponent(current().name)}`);
    $("search-results").replaceChildren(...(items.length ? items.map((it) => {
      const li = el("li");
      const b = el("button", "+ " + it.title);
      b.type = "button";
      b.title = "add to the history";
      b.addEventListener("click", () => {
        const h = $("history").value.trim();
        $("history").value = h ? h + ", " + it.item_id : it.item_id;
      });
      li.appendChild(b);
      return li;
    }) : [el("li", "no title matches", "muted")]));
  } catch (e) { showError(e.message); }
}

// One key per form content: a retried or double-sent add names the same item (the server answers
// 200 with it instead of adding a copy); a new title or description gets a new key.
let addKey = { text: null, key: null };
function idempotencyKey(text) {
  if (addKey.text !== text) {
    const rnd = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Math.random()).slice(2) + Date.now();
    addKey = { text, key: rnd };
  }
  return addKey.key;
}

async function addItem() {
  const btn = $("add-btn");
  if (btn.disabled) return;  // an add is running
  showError("");
  $("add-result").textContent = "";
  btn.disabled = true;
  $("add-progress").hidden = false;
  $("add-status").textContent = "adding: encoding the text and saving the artifact…";
  try {
    const body = { model: current().name, title: $("add-title").value.trim(), description: $("add-desc").value.trim() };
    let who_ = null;
    try { who_ = who(); } catch (_) { who_ = null; }
    if (who_ && who_.user) body.rank_for_user = who_.user;
    const key = idempotencyKey(JSON.stringify([body.model, body.title, body.description]));
    const r = await api("POST", "/items", body, { Authorization: "Bearer " + $("add-token").value, "Idempotency-Key": key });
    current().n_items = r.n_items;
    showInfo();
    $("add-result").textContent = `${r.created ? "added" : "already added"} "${r.item.title}" as ${r.item.item_id}; ` +
      `catalog now ${r.n_items} items` +
      (r.rank_for_user ? `; it ranks #${r.rank_for_user} for user ${body.rank_for_user}` : "");
    if (who_) await recommend(r.item.item_id);
  } catch (e) { showError(e.message); } finally {
    btn.disabled = false;
    $("add-progress").hidden = true;
    $("add-status").textContent = "";
  }
}

$("model").addEventListener("change", applyCapabilities);
$("recommend-btn").addEventListener("click", () => recommend());
$("query-btn").addEventListener("click", writeQuery);
$("search-btn").addEventListener("click", search);
$("search").addEventListener("keydown", (e) => { if (e.key === "Enter") search(); });
$("add-btn").addEventListener("click", addItem);
loadModels().catch((e) => showError("cannot reach the server: " + e.message));
