// The page of `clintune serve`: a note in, the model's answer out. It talks only to this server
// (/v1/model, /v1/predict, /readyz) and builds every element with DOM calls: the note's text is
// never parsed as HTML.
"use strict";

const KEY_STORE = "clintune-api-key";
const COLORS = ["#ffd166", "#8ecae6", "#b5e48c", "#f4a3c4", "#cdb4db", "#ffb703", "#90e0ef", "#f6bd60"];
const HEADLINE = {
  binary: ["f1", "precision", "recall", "roc_auc", "accuracy"],
  multiclass: ["accuracy", "f1_macro", "f1_weighted"],
  multilabel: ["f1_micro", "f1_macro", "precision_at_5"],
  ner: ["f1", "precision", "recall"],
};
const $ = (id) => document.getElementById(id);
let model = null;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) node.append(child);
  return node;
}

function headers() {
  const result = { "Content-Type": "application/json" };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) result.Authorization = "Bearer " + key;
  return result;
}

function setStatus(text) { $("status").textContent = text; }

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

function colorOf(label) {
  const index = model && model.labels ? model.labels.indexOf(label) : -1;
  return COLORS[(index < 0 ? 0 : index) % COLORS.length];
}

async function loadModel() {
  let response;
  try {
    response = await fetch("/v1/model", { headers: headers() });
  } catch (error) {
    setStatus("cannot reach the server");
    return;
  }
  if (response.status === 401) {
    $("key-row").hidden = false;
    setStatus(sessionStorage.getItem(KEY_STORE) ? "wrong API key" : "enter the API key");
    return;
  }
  if (!response.ok) {
    setStatus("the server answered " + response.status);
    return;
  }
  model = await response.json();
  $("key-row").hidden = !model.api_key_required;
  showModel(model);
  waitUntilReady(model.ready);
}

async function waitUntilReady(ready) {
  while (!ready) {
    setStatus("loading the model...");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    try {
      ready = (await fetch("/readyz")).ok;
    } catch (error) { /* the server may be starting */ }
  }
  $("predict").disabled = false;
  setStatus("ready");
}

function fact(list, term, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", { textContent: term }), el("dd", { textContent: String(value) }));
}

function showModel(info) {
  $("model-name").textContent = info.name;
  document.title = info.name + " · clintune serve";
  const facts = $("model-facts");
  facts.replaceChildren();
  fact(facts, "task", info.task === "ner" ? "named entities (NER)" : info.task + " classification");
  fact(facts, "runs on", info.backend === "onnx" ? "ONNX Runtime" + (info.quantize ? " (" + info.quantize + ")" : "") : "PyTorch");
  fact(facts, "base model", String(info.base_model).split("/").filter(Boolean).slice(-2).join("/"));
  fact(facts, "max length", info.max_length + " tokens" + (info.long_text === "chunk" ? ", longer texts in windows" : ", longer texts truncated"));
  for (const [split, entry] of Object.entries(info.data || {})) {
    fact(facts, split + " data", entry.examples + " examples, sha256 " + String(entry.sha256 || "").slice(0, 12));
  }
  fact(facts, "trained", info.created ? info.created.slice(0, 10) : "");
  $("labels-title").textContent = (info.task === "ner" ? "Entity types" : "Labels") + " (" + info.labels.length + ")";
  $("labels").replaceChildren(...info.labels.map((label) => {
    const chip = el("li", { textContent: label });
    if (info.task === "ner") chip.style.background = colorOf(label);
    return chip;
  }));
  $("rule").textContent = info.decision_rule.description;
  showMetrics(info);
}

function showMetrics(info) {
  const table = $("metrics");
  table.replaceChildren();
  const splits = Object.keys(info.metrics || {});
  const notes = info.metrics_notes || {};
  $("metrics-rule").hidden = !info.earlier_rule && !!splits.length;
  $("metrics-rule").textContent = !splits.length
    ? "No figures were measured under the rule in force; score the model under it with clintune eval."
    : "Measured under the rule in force" + (info.earlier_rule ? " (stored after training; the training-time figures of the earlier rule, "
      + info.earlier_rule + ", do not describe it and are not shown)" : "") + ".";
  if (!splits.length) return;
  table.append(el("tr", {}, el("th", { textContent: "" }), ...splits.map((s) => {
    const header = el("th", { textContent: s.split("/").pop(), title: s });
    if (notes[s]) header.append(el("span", { className: "figures-note", textContent: notes[s] }));
    return header;
  })));
  for (const name of HEADLINE[info.task] || []) {
    if (!splits.some((s) => typeof info.metrics[s][name] === "number")) continue;
    const cells = splits.map((split) => {
      const value = info.metrics[split][name];
      const interval = (info.metrics[split].confidence_intervals || {})[name];
      const text = typeof value === "number" ? value.toFixed(3) : "";
      const cell = el("td", { textContent: text });
      if (interval) cell.append(el("span", { className: "ci", textContent: interval.low.toFixed(2) + "–" + interval.high.toFixed(2) }));
      return cell;
    });
    table.append(el("tr", {}, el("th", { textContent: name.replace("_", " ") }), ...cells));
  }
  const first = info.metrics[splits[0]];
  if (first.n_examples || first.n_sentences) {
    table.append(el("tr", {}, el("td", { colSpan: splits.length + 1, className: "muted small",
      textContent: "95% bootstrap intervals; " + splits.map((s) => s + ": " + (info.metrics[s].n_examples || info.metrics[s].n_sentences) +
        (info.task === "ner" ? " sentences" : " texts")).join(", ") })));
  }
}

async function predict(event) {
  event.preventDefault();
  const text = $("note").value;
  showError("");
  if (!text.trim()) {
    showError("Type or paste a note first.");
    return;
  }
  $("predict").disabled = true;
  setStatus("predicting...");
  const started = performance.now();
  try {
    const response = await fetch("/v1/predict", {
      method: "POST", headers: headers(),
      body: JSON.stringify({ texts: [text], probabilities: model.task !== "ner" }),
    });
    const answer = await response.json();
    if (!response.ok) {
      if (response.status === 401) $("key-row").hidden = false;
      showError(answer.detail || ("the server answered " + response.status));
      setStatus("");
      return;
    }
    showResult(text, answer[0]);
    setStatus("answered in " + Math.round(performance.now() - started) + " ms");
  } catch (error) {
    showError("The server could not be reached: " + error.message);
    setStatus("");
  } finally {
    $("predict").disabled = false;
  }
}

function showResult(text, result) {
  $("result").hidden = false;
  const isNer = Array.isArray(result.entities);
  $("classification").hidden = isNer;
  $("ner").hidden = !isNer;
  if (isNer) showEntities(text, result.entities);
  else showClassification(result);
}

function percent(p) { return (100 * p).toFixed(1) + "%"; }

function showClassification(result) {
  // Multi-label: every label over its own threshold, as chips with their probabilities (none is an answer too).
  const labels = Array.isArray(result.labels) ? result.labels : null;
  if (labels) {
    $("label").replaceChildren(...(labels.length ? labels.map((label) =>
      el("span", { className: "label-chip", textContent: label + " " + percent(result.scores[label]),
        title: "given: its probability reached its threshold, " + percent(result.thresholds[label]) }))
      : [el("span", { className: "no-labels", textContent: "no labels" })]));
    $("score").textContent = "";
  } else {
    $("label").textContent = result.label;
    $("score").textContent = percent(result.score);
  }
  // The rule, not the most probable class, chose this label: say so, with the probability that drove it.
  const reason = result.decided_by;
  $("decided-by").hidden = !reason;
  $("decided-by").textContent = reason
    ? "Chosen by the decision rule, not as the most probable class: P(" + reason.group.split("+").join(" or ") + ") = " +
      percent(reason.group_probability) + " (rule: " + reason.rule + ")."
    : "";
  const rows = Object.entries(result.probabilities || {}).sort((a, b) => b[1] - a[1]);
  $("bars").replaceChildren(...rows.map(([label, p]) => {
    const fill = el("span", { className: "fill" });
    fill.style.width = Math.max(0, Math.min(100, 100 * p)).toFixed(2) + "%";
    const predicted = labels ? labels.includes(label) : label === result.label;
    const row = el("div", { className: "bar-row" + (predicted ? " predicted" : "") },
      el("span", { className: "bar-label", textContent: label, title: label }),
      el("span", { className: "meter" }, fill),
      el("span", { className: "bar-value", textContent: percent(p) }));
    row.dataset.label = label;
    row.dataset.probability = String(p);
    return row;
  }));
}

function showEntities(text, entities) {
  const sorted = [...entities].sort((a, b) => a.start - b.start);
  const nodes = [];
  let position = 0;
  for (const entity of sorted) {
    if (entity.start < position) continue;  // overlapping spans do not occur; never garble the text if one did
    nodes.push(document.createTextNode(text.slice(position, entity.start)));
    const mark = el("mark", { className: "entity", title: entity.label + " " + entity.score.toFixed(3) },
      el("span", { className: "entity-text", textContent: text.slice(entity.start, entity.end) }),
      el("span", { className: "entity-tag", textContent: entity.label + " " + entity.score.toFixed(2) }));
    mark.style.background = colorOf(entity.label);
    Object.assign(mark.dataset, { label: entity.label, start: entity.start, end: entity.end, score: entity.score });
    nodes.push(mark);
    position = entity.end;
  }
  nodes.push(document.createTextNode(text.slice(position)));
  $("highlighted").replaceChildren(...nodes);
  $("entities").querySelector("tbody").replaceChildren(...sorted.map((e) => el("tr", {},
    el("td", {}, Object.assign(el("span", { className: "swatch" }), { title: e.label }), e.label),
    el("td", { textContent: e.start + "–" + e.end }),
    el("td", { textContent: e.score.toFixed(3) }),
    el("td", { textContent: e.text }))));
  for (const swatch of $("entities").querySelectorAll(".swatch")) swatch.style.background = colorOf(swatch.title);
  $("entities").hidden = sorted.length === 0;
  $("no-entities").hidden = sorted.length !== 0;
}

document.addEventListener("DOMContentLoaded", () => {
  $("predict-form").addEventListener("submit", predict);
  $("note").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !$("predict").disabled) predict(event);
  });
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORE, $("api-key").value.trim());
    loadModel();
  });
  loadModel();
});
