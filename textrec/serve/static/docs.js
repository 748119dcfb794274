// The API reference, rendered from /openapi.json by this packaged script (no CDN: works offline).
"use strict";
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };

function resolve(spec, schema) {
  // follow a local $ref ("#/components/schemas/X") once; nested ones are named, not expanded
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return Object.assign({ title: name }, spec.components.schemas[name] || {});
  }
  return schema || {};
}

function typeOf(spec, s) {
  if (!s) return "";
  if (s.$ref) return s.$ref.split("/").pop();
  if (s.anyOf) return s.anyOf.map((x) => typeOf(spec, x)).join(" | ");
  if (s.type === "array") return typeOf(spec, s.items) + "[]";
  return s.type || "";
}

function limits(s) {
  const parts = [];
  for (const [k, label] of [["minimum", ">="], ["maximum", "<="], ["exclusiveMinimum", ">"], ["exclusiveMaximum", "<"],
                             ["minLength", "min length"], ["maxLength", "max length"], ["minItems", "min items"],
                             ["maxItems", "max items"], ["pattern", "pattern"], ["default", "default"]]) {
    if (s[k] !== undefined) parts.push(`${label} ${JSON.stringify(s[k])}`);
  }
  if (s.anyOf) s.anyOf.forEach((x) => { if (x.type !== "null") parts.push(...limits(x)); });
  if (s.items) limits(s.items).forEach((p) => parts.push("each: " + p));
  return parts;
}

function schemaTable(spec, schema) {
  const s = resolve(spec, schema);
  const props = s.properties || {};
  const required = new Set(s.required || []);
  const table = el("table", undefined, "schema");
  const head = el("tr");
  ["field", "type", "required", "limits", "description"].forEach((h) => head.append(el("th", h)));
  table.append(head);
  for (const [name, p] of Object.entries(props)) {
    const tr = el("tr");
    tr.append(el("td", name), el("td", typeOf(spec, p)), el("td", required.has(name) ? "yes" : ""),
              el("td", limits(p).join(", ")), el("td", p.description || ""));
    table.append(tr);
  }
  return table;
}

function endpoint(spec, path, method, op) {
  const sec = el("section");
  const h = el("h2");
  h.append(el("code", method.toUpperCase() + " " + path), document.createTextNode(" " + (op.summary || "")));
  sec.append(h);
  if (op.description) sec.append(el("p", op.description));
  if (op.parameters && op.parameters.length) {
    sec.append(el("h3", "parameters"));
    const t = { properties: {}, required: [] };
    op.parameters.forEach((p) => { t.properties[`${p.name} (${p.in})`] = p.schema || {}; if (p.required) t.required.push(`${p.name} (${p.in})`); });
    sec.append(schemaTable(spec, t));
  }
  const body = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
  if (body) { sec.append(el("h3", "request body")); sec.append(schemaTable(spec, body.schema)); }
  sec.append(el("h3", "responses"));
  const ul = el("ul");
  for (const [code, r] of Object.entries(op.responses || {})) {
    const li = el("li");
    li.append(el("code", code), document.createTextNode(" " + (r.description || "")));
    const c = r.content && r.content["application/json"];
    if (c && c.schema && (c.schema.$ref || c.schema.properties)) li.append(schemaTable(spec, c.schema));
    ul.append(li);
  }
  sec.append(ul);
  return sec;
}

fetch("/openapi.json").then((r) => r.json()).then((spec) => {
  document.title = `${spec.info.title} ${spec.info.version} API`;
  document.getElementById("api-version").textContent = spec.info.version;
  document.getElementById("api-description").textContent = spec.info.description || "";
  const box = document.getElementById("endpoints");
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) box.append(endpoint(spec, path, method, op));
  }
}).catch((e) => {
  const err = document.getElementById("docs-error");
  err.textContent = "could not read /openapi.json: " + e;
  err.hidden = false;
});
