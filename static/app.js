// Keyboard operation, inline confirmation, ticking times and announcements.
// The page is redrawn under the operator by the live stream (rows, the run's header),
// by restarts and by paging: selection, focus and an open confirmation are kept by
// what they point at (a run id, a form's URL), never by DOM node.
(function () {
  "use strict";

  const ACTED = "ca-acted"; // sessionStorage: runs this tab acted on, to tell their outcome
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);

  let selectedId = null;
  let rowHadFocus = false;
  let focusKey = null; // {host, action} of a focused action button
  let pending = null; // {form, bar, key} while a confirmation is open
  let skew = 0; // server clock minus this browser's clock, in ms

  const live = () => document.getElementById("live");
  const rows = () => Array.from(document.querySelectorAll("#runs-body tr.run"));
  const rowById = (id) => document.getElementById("run-" + id);
  const short = (id) => (id || "").slice(0, 8);

  function announce(text, visible) {
    const region = live();
    if (region) {
      // A repeated message is still read out: clear, then set on the next frame.
      region.textContent = "";
      requestAnimationFrame(() => (region.textContent = text));
    }
    if (visible) notice(text);
  }

  function notice(text) {
    const box = document.getElementById("alerts");
    if (!box) return;
    const note = document.createElement("p");
    note.className = "alert alert-info";
    note.textContent = text;
    box.replaceChildren(note);
    setTimeout(() => note.remove(), 6000);
  }

  // -- runs this tab acted on: their outcome is announced when it comes -------------

  function acted() {
    try {
      return JSON.parse(sessionStorage.getItem(ACTED) || "{}");
    } catch {
      return {};
    }
  }

  function store(key, value, where) {
    try {
      const storage = where || sessionStorage;
      if (value === null) storage.removeItem(key);
      else storage.setItem(key, value);
    } catch {
      // Storage off or full: outcomes go unannounced, nothing else breaks.
    }
  }

  function remember(runId, verb) {
    const all = acted();
    all[runId] = verb;
    store(ACTED, JSON.stringify(all));
  }

  function reportOutcomes(root) {
    const all = acted();
    if (!Object.keys(all).length) return;
    let changed = false;
    for (const el of root.querySelectorAll("[data-run-id][data-status]")) {
      const id = el.dataset.runId;
      if (id in all && TERMINAL.has(el.dataset.status)) {
        announce(`Run ${short(id)} ${el.dataset.status}.`);
        delete all[id];
        changed = true;
      }
    }
    if (changed) store(ACTED, JSON.stringify(all));
  }

  // -- a run's row as the server sends it, completed here ----------------------------

  // The server sends a row's facts once (runs/_row.html). What repeats them - the row's
  // accessible name, the checkbox, the copy button and the action forms with their
  // confirmation - is drawn here: all of it needs this script to work anyway.
  const utcStamp = (iso) => new Date(iso).toISOString().slice(0, 19).replace("T", " ") + " UTC";

  function make(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) if (value != null) node.setAttribute(name, value);
    if (text) node.textContent = text;
    return node;
  }

  function expandRows(root) {
    if (!(root instanceof Element || root instanceof Document)) return;
    const found = root.matches?.("tr.run") ? [root] : root.querySelectorAll("tr.run:not([data-run-id])");
    for (const row of found) if (!row.dataset.runId) expandRow(row);
  }

  // A row's cells by their place from its end (app/web/rows.py): only the cells
  // scripts fill carry a class.
  const CELL = { id: 10, wf: 9, time: 7, tokens: 5, cost: 4 };
  const cellOf = (row, name) => row.cells[row.cells.length - CELL[name]];

  function expandRow(row) {
    const id = row.id.slice(4);
    const link = cellOf(row, "id").querySelector("a");
    link.dataset.open = "";
    const name = cellOf(row, "wf").textContent;
    const status = row.dataset.status;
    row.dataset.runId = id;
    row.tabIndex = -1;
    const time = cellOf(row, "time").querySelector("time");
    const created = utcStamp(time.getAttribute("datetime"));
    time.dataset.rel = "";
    time.dataset.abs = created;
    time.title = created;
    let label = `Run ${link.textContent}, ${name}, ${status}`;
    const restarting = row.querySelector(".restarting a");
    const outcome = row.querySelector(".outcome");
    if (restarting) label += `, restarting as ${restarting.textContent}`;
    else if (outcome) {
      const latest = Array.from(outcome.querySelectorAll("a")).pop();
      label += `, restarted: latest attempt ${latest.textContent} ${outcome.querySelector(".badge").textContent}`;
    }
    row.setAttribute("aria-label", `${label}, created ${created}`);
    row.querySelector("td.pick")?.append(
      make("input", {
        type: "checkbox",
        "data-pick": "",
        value: id,
        tabindex: "-1",
        "aria-label": `Select run ${link.textContent} for a bulk action`,
        "aria-keyshortcuts": "x",
      }),
    );
    link.after(
      make("button", {
        type: "button",
        class: "copy-id",
        "data-copy-id": id,
        tabindex: "-1",
        "aria-label": `Copy the id of run ${link.textContent}`,
        "aria-keyshortcuts": "i",
        title: "Copy the full run id (i)",
      }),
    );
    const why = row.querySelector(".error-summary");
    if (why) why.title = why.textContent;
    const cell = row.querySelector("td.actions[data-do]");
    if (!cell) return;
    for (const control of rowActions(row, cell, id, name)) cell.append(control, " ");
    if (window.htmx) htmx.process(cell);
  }

  // The same forms and questions the run's page has (runs/_detail_parts.html), for the
  // run or, once it was restarted, its chain's latest attempt.
  function rowActions(row, cell, id, name) {
    const [tipId, tipCost, tipTokens] = (cell.dataset.tip || "").split(" ");
    const target = tipId || id;
    const tshort = short(target);
    const cost = tipCost || cellOf(row, "cost").textContent;
    const tokens = tipTokens || cellOf(row, "tokens").textContent;
    const who = `run ${tshort} (${name})`;
    const last = `Last run: ${cost}, ${tokens} tokens.`;
    const where = cell.dataset.node || "where it stopped";
    const expect = cell.dataset.e || "";
    const median = expect.endsWith("*");
    const operate = document.body.dataset.operate === "yes";
    const out = [];
    for (const verb of cell.dataset.do.split(" ")) {
      if (!operate) {
        const text = { cancel: "Cancel", restart: tipId ? `Restart ${tshort}` : "Restart", resume: "Resume", edit: "Edit" }[verb];
        const css = { cancel: "btn btn-danger", edit: "btn btn-link" }[verb] || "btn";
        out.push(make("button", { type: "button", class: css, disabled: "", "aria-describedby": "read-only", title: "Needs an operator: viewers can only look" }, text));
      } else if (verb === "edit") {
        out.push(make("a", { class: "btn btn-link", href: `/workflows/${target}/edit`, "data-action": "edit", "aria-keyshortcuts": "e", "aria-label": `Edit the inputs of run ${tshort} and restart` }, "Edit"));
      } else {
        const path = `/workflows/${target}/${verb === "cancel" ? "cancel" : "restart"}`;
        const question = {
          cancel: `Cancel ${who}?`,
          restart: `Restart ${who}? ${last} Expected: about ${median ? expect.slice(0, -1) : expect}${median ? " (the workflow's median)" : ""}.`,
          resume: `Resume ${who} from ${where}? Completed nodes are reused at no cost. ${last}`,
        }[verb];
        const form = make("form", { method: "post", action: path, "hx-post": path, "data-run": target, "data-confirm": question });
        const token = document.querySelector('meta[name="csrf-token"]')?.content;
        if (token) form.append(make("input", { type: "hidden", name: "_csrf", value: token }));
        if (verb === "resume") form.append(make("input", { type: "hidden", name: "from", value: "failure" }));
        const labels = {
          cancel: [null, "Cancel"],
          restart: tipId ? [`Restart ${tshort}, the latest attempt`, `Restart ${tshort}`] : [null, "Restart"],
          resume: [`Resume run ${tshort} from ${where}`, "Resume"],
        }[verb];
        const keys = { cancel: "c", restart: "r", resume: "R" }[verb];
        form.append(
          make(
            "button",
            { type: "submit", class: verb === "cancel" ? "btn btn-danger" : "btn", "data-action": verb, "aria-keyshortcuts": keys, "aria-label": labels[0] },
            labels[1],
          ),
        );
        out.push(form);
      }
    }
    return out;
  }

  // -- selection --------------------------------------------------------------------

  function select(row, focus) {
    if (!row) return;
    for (const r of document.querySelectorAll("#runs-body tr.selected")) r.classList.remove("selected");
    row.classList.add("selected");
    selectedId = row.dataset.runId;
    if (focus) {
      row.focus({ preventScroll: true });
      row.scrollIntoView({ block: "nearest" });
    }
  }

  function move(step) {
    const all = rows();
    if (!all.length) return;
    const current = selectedId ? all.findIndex((r) => r.dataset.runId === selectedId) : -1;
    let next = current === -1 ? (step > 0 ? 0 : all.length - 1) : current + step;
    next = Math.max(0, Math.min(all.length - 1, next));
    select(all[next], true);
  }

  function selectedRow() {
    return selectedId ? rowById(selectedId) : null;
  }

  // -- bulk selection: runs picked with x (or their box), or every run matching --------

  const picked = new Set(); // run ids, kept across redraws and pages
  let everyMatching = false; // "select all runs matching these filters"
  let anchorId = null; // where X extends a range from
  let matched = null; // how many runs "every run matching" covers, once counted

  // N of "all N runs matching": the server counts them over every page (a dry run).
  async function countMatching() {
    const filters = document.getElementById("filters");
    const token = document.querySelector('meta[name="csrf-token"]')?.content;
    if (!filters) return;
    const filter = {};
    for (const [name, value] of new FormData(filters)) if (value) filter[name] = value;
    try {
      const answer = await fetch("/workflows/restart", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", ...(token ? { "X-CSRF-Token": token } : {}) },
        body: JSON.stringify({ filter, dry_run: true }),
      });
      if (!answer.ok || !everyMatching) return;
      matched = (await answer.json()).matched;
      renderBulk();
      announce(bulkForm().querySelector("[data-bulk-count]").textContent);
    } catch {
      // The count is a courtesy: the confirmation counts again before anything is done.
    }
  }

  const bulkForm = () => document.getElementById("bulk");
  const bulkConfirm = () => document.getElementById("bulk-confirm");

  // Boxes of redrawn rows: checked from the selection (no DOM nodes added, so the
  // observer that calls this is not woken by it).
  function syncBoxes() {
    for (const box of document.querySelectorAll("#runs-body input[data-pick]")) {
      const on = everyMatching || picked.has(box.value);
      if (box.checked !== on) box.checked = on;
      const row = box.closest("tr");
      if (row && row.classList.contains("picked") !== on) row.classList.toggle("picked", on);
    }
  }

  function renderBulk() {
    const form = bulkForm();
    if (!form) return;
    syncBoxes();
    const ids = form.querySelector("[data-bulk-ids]");
    ids.replaceChildren(
      ...(everyMatching ? [] : Array.from(picked, (id) => Object.assign(document.createElement("input"), { type: "hidden", name: "ids", value: id }))),
    );
    form.querySelector("[data-bulk-all]").value = everyMatching ? "1" : "";
    const count = form.querySelector("[data-bulk-count]");
    count.textContent = everyMatching
      ? matched === null
        ? "Every run matching these filters is selected (all pages)."
        : `All ${matched.toLocaleString("en")} run${matched === 1 ? "" : "s"} matching these filters are selected (all pages).`
      : `${picked.size} run${picked.size === 1 ? "" : "s"} selected.`;
    form.hidden = !everyMatching && picked.size === 0;
    form.querySelector("[data-bulk-every]").hidden = everyMatching;
  }

  function pick(id, on) {
    everyMatching = false;
    if (on) picked.add(id);
    else picked.delete(id);
  }

  function togglePick(row) {
    if (!row || !row.querySelector("input[data-pick]")) return false;
    const id = row.dataset.runId;
    const on = everyMatching ? false : !picked.has(id);
    if (everyMatching) {
      // Leaving "every run": keep what is on this page, less this row.
      everyMatching = false;
      for (const r of rows()) picked.add(r.dataset.runId);
    }
    pick(id, on);
    anchorId = id;
    renderBulk();
    announce(`Run ${short(id)} ${on ? "selected" : "not selected"}; ${picked.size} selected.`);
    return true;
  }

  function extendPick(row) {
    if (!row || !row.querySelector("input[data-pick]")) return false;
    const all = rows();
    const from = all.findIndex((r) => r.dataset.runId === (anchorId || row.dataset.runId));
    const to = all.indexOf(row);
    const [a, b] = from === -1 ? [to, to] : [Math.min(from, to), Math.max(from, to)];
    everyMatching = false;
    for (const r of all.slice(a, b + 1)) picked.add(r.dataset.runId);
    if (anchorId === null) anchorId = row.dataset.runId;
    renderBulk();
    announce(`${b - a + 1} rows selected; ${picked.size} in all.`);
    return true;
  }

  function clearPicks(quiet) {
    picked.clear();
    everyMatching = false;
    anchorId = null;
    bulkConfirm()?.replaceChildren();
    renderBulk();
    if (!quiet) announce("Selection cleared.");
  }

  function bulkOpen() {
    return document.querySelector("[data-bulk-open]");
  }

  function closeBulk() {
    const open = bulkOpen();
    if (!open) return false;
    open.remove();
    (bulkForm()?.querySelector("[data-bulk-verb]") || selectedRow())?.focus({ preventScroll: true });
    announce("Not done.");
    return true;
  }

  // -- inline confirmation, the same for mouse and keyboard ---------------------------

  // A form is known by its action URL and verb, so a redrawn row's form is "the same"
  // only if it would do the same thing to the same run.
  function formKey(form) {
    const button = form.querySelector("[data-action]");
    return button ? form.getAttribute("action") + "#" + button.dataset.action : null;
  }

  // The same form in the same row (two rows of one chain both offer its latest attempt).
  function formByKey(key, hostId) {
    const scope = (hostId && document.getElementById(hostId)) || document;
    for (const form of scope.querySelectorAll("form[action]")) {
      if (formKey(form) === key) return form;
    }
    return null;
  }

  function closeConfirm(restoreFocus) {
    if (!pending) return;
    const { form, bar } = pending;
    pending = null;
    bar.remove();
    form.classList.remove("is-confirming");
    if (restoreFocus && form.isConnected) {
      const host = form.closest("tr.run");
      (host || form.querySelector("button"))?.focus({ preventScroll: true });
    }
  }

  // `focusOn`: "yes", "no", or null to leave the focus where it is (a redraw must not
  // move the operator from "No" to "Yes").
  function askConfirm(form, quiet, focusOn = "yes") {
    closeConfirm(false);
    const question = form.dataset.confirm || "Are you sure?";
    const bar = document.createElement("span");
    bar.className = "confirm";
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", question);
    const text = document.createElement("span");
    text.className = "confirm-text";
    text.textContent = question;
    const yes = document.createElement("button");
    yes.type = "button";
    yes.className = "btn btn-primary";
    yes.textContent = "Yes (y)";
    const no = document.createElement("button");
    no.type = "button";
    no.className = "btn";
    no.textContent = "No (Esc)";
    bar.append(text, yes, no);
    form.classList.add("is-confirming");
    form.after(bar);
    pending = { form, bar, key: formKey(form), focused: focusOn, host: form.closest("[id]")?.id };
    bar.addEventListener("focusin", (event) => {
      if (pending?.bar === bar) pending.focused = event.target === no ? "no" : "yes";
    });
    yes.addEventListener("click", () => confirmPending());
    no.addEventListener("click", () => {
      closeConfirm(true);
      announce("Not done.");
    });
    if (!quiet) announce(question + " Press y or Enter to confirm, Escape to back out.");
    if (focusOn) (focusOn === "no" ? no : yes).focus({ preventScroll: true });
  }

  function confirmPending() {
    if (!pending) return;
    const { form } = pending;
    const button = form.querySelector("[data-action]");
    closeConfirm(false);
    const host = form.closest("tr.run");
    if (host) host.focus({ preventScroll: true });
    // A restart from a run's page opens the new run's page: that run is the one to follow.
    if (!form.hasAttribute("hx-post") && button?.dataset.action === "restart") {
      store(ACTED + "-next", form.dataset.run || "");
    }
    form.dataset.confirmed = "1";
    form.requestSubmit();
  }

  // The row or header under an open confirmation was redrawn: open it again on the
  // new form if it still does the same thing, or say why it no longer can.
  function keepConfirmation() {
    if (!pending || pending.bar.isConnected) return;
    const { key, focused } = pending;
    const question = pending.form.dataset.confirm || "";
    const host = pending.host;
    pending = null;
    const form = formByKey(key, host);
    if (form) {
      askConfirm(form, true, focused);
    } else {
      const what = question.replace(/\?.*$/, "").trim() || "That action";
      announce(`${what}: no longer possible, the run has changed. Nothing was done.`, true);
    }
  }

  // `r` or `c` where that action is not offered: say why, aloud and on screen.
  function cannot(action, runId, status) {
    const name = `Run ${short(runId)}`;
    let why;
    if (document.body.dataset.operate !== "yes") {
      why = `You can only read: ${action === "restart" ? "restarting" : "cancelling"} a run needs an operator.`;
    } else if (action === "restart") {
      why =
        status === "pending" || status === "running"
          ? `${name} is ${status}: it can be restarted once it has ended.`
          : `${name} is being restarted already.`;
    } else {
      why = `${name} is ${status}: only a pending or running run can be cancelled.`;
    }
    announce(why, true);
  }

  function isTyping(target) {
    if (!(target instanceof Element)) return false;
    return target.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName);
  }

  // -- copying a run's id ---------------------------------------------------------------

  // Without the Clipboard API (a plain-HTTP address other than localhost, a refused
  // permission): show the full id at the top of the page, selected (the live stream
  // does not redraw it there), and try the older way; Ctrl+C still copies it.
  function selectForCopy(id) {
    const box = document.getElementById("alerts");
    if (!box) return false;
    const note = document.createElement("p");
    note.className = "alert alert-info";
    const holder = Object.assign(document.createElement("span"), { className: "mono run-id", textContent: id });
    note.append("Run id: ", holder);
    box.replaceChildren(note);
    setTimeout(() => note.remove(), 15000);
    const range = document.createRange();
    range.selectNodeContents(holder);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try {
      return document.execCommand("copy");
    } catch {
      return false;
    }
  }

  async function copyId(id) {
    let copied = false;
    try {
      await navigator.clipboard.writeText(id);
      copied = true;
    } catch {
      copied = selectForCopy(id);
    }
    for (const button of document.querySelectorAll(`[data-copy-id="${CSS.escape(id)}"]`)) {
      button.classList.add("is-copied");
      setTimeout(() => button.classList.remove("is-copied"), 1500);
    }
    announce(copied ? `Copied the id of run ${short(id)}.` : `The id of run ${short(id)} is selected: copy it with Ctrl+C.`);
  }

  // -- times that tick -----------------------------------------------------------------

  function relative(ms) {
    const s = Math.floor(ms / 1000);
    if (s < 5) return "just now";
    if (s >= 86400) return `${Math.floor(s / 86400)}d ago`;
    if (s >= 3600) return `${Math.floor(s / 3600)}h ago`;
    if (s >= 60) return `${Math.floor(s / 60)}m ago`;
    return `${s}s ago`;
  }

  function duration(ms) {
    const s = ms / 1000;
    if (s < 1) return `${Math.max(0, Math.round(ms))} ms`;
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
    return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
  }

  function tick() {
    const now = Date.now() + skew;
    for (const el of document.querySelectorAll("time[data-rel]")) {
      const text = relative(now - Date.parse(el.getAttribute("datetime")));
      if (el.textContent !== text) el.textContent = text;
    }
    for (const el of document.querySelectorAll("[data-since]")) {
      const text = duration(now - Date.parse(el.dataset.since));
      if (el.textContent !== text) el.textContent = text;
    }
  }

  // -- UTC or local time, the operator's choice (kept in this browser) -----------------

  const ZONE = "ca-zone";
  const UTC_STAMP = /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/;
  let zone = "utc";
  try {
    zone = localStorage.getItem(ZONE) === "local" ? "local" : "utc";
  } catch {
    zone = "utc";
  }

  function localStamp(iso) {
    const d = new Date(iso);
    const p = (n) => String(n).padStart(2, "0");
    const off = -d.getTimezoneOffset();
    const sign = off >= 0 ? "+" : "-";
    const hm = `${p(Math.floor(Math.abs(off) / 60))}:${p(Math.abs(off) % 60)}`;
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} UTC${sign}${hm}`;
  }

  // The server writes absolute times in UTC; in local mode each one (a time's text,
  // its title and floating label, a row's accessible name) is rewritten, the UTC
  // original kept beside it to switch back.
  function zoneTimes(root) {
    for (const el of (root || document).querySelectorAll("time[datetime]")) {
      if (el.dataset.zone === zone) continue;
      const local = localStamp(el.getAttribute("datetime"));
      for (const attr of ["title", "data-abs"]) {
        const utc = el.getAttribute("data-utc-" + attr) ?? el.getAttribute(attr);
        if (!utc || !UTC_STAMP.test(utc)) continue;
        el.setAttribute("data-utc-" + attr, utc);
        el.setAttribute(attr, zone === "local" ? local : utc);
      }
      if (!el.hasAttribute("data-rel")) {
        const utc = el.dataset.utcText ?? el.textContent;
        if (UTC_STAMP.test(utc)) {
          el.dataset.utcText = utc;
          el.textContent = zone === "local" ? local : utc;
        }
      }
      const row = el.closest("tr.run[aria-label]");
      if (row && cellOf(row, "time").contains(el)) {
        const utc = row.dataset.utcLabel ?? row.getAttribute("aria-label");
        row.dataset.utcLabel = utc;
        row.setAttribute("aria-label", zone === "local" ? utc.replace(UTC_STAMP, local) : utc);
      }
      el.dataset.zone = zone;
    }
    const button = document.getElementById("zone-toggle");
    if (button) {
      button.setAttribute("aria-pressed", zone === "local" ? "true" : "false");
      const name = button.querySelector("[data-zone-name]");
      const text = zone === "local" ? "local" : "UTC";
      if (name.textContent !== text) name.textContent = text;
    }
  }

  function toggleZone() {
    zone = zone === "local" ? "utc" : "local";
    store(ZONE, zone === "local" ? "local" : null, localStorage);
    zoneTimes(document);
    announce(zone === "local" ? `Times are shown in local time (${localStamp(new Date().toISOString()).slice(20)}).` : "Times are shown in UTC.");
  }

  // -- a pinned default view (a cookie, so the server can open it at /workflows) -------

  const PIN = "ca_view";
  const PIN_KEYS = ["status", "workflow", "since", "until", "q"];

  function viewQuery(search) {
    const params = new URLSearchParams(search);
    const kept = new URLSearchParams();
    for (const [key, value] of params) if (PIN_KEYS.includes(key) && value) kept.append(key, value);
    return kept.toString();
  }

  function pinnedView() {
    const found = document.cookie.split("; ").find((c) => c.startsWith(PIN + "="));
    return found ? decodeURIComponent(found.slice(PIN.length + 1)) : "";
  }

  function syncPin() {
    const button = document.getElementById("pin-view");
    if (!button) return;
    const here = viewQuery(location.search);
    const pinned = pinnedView();
    const isPinned = Boolean(pinned) && pinned === here;
    // Only what changed: this runs on every redraw, and a write would be one more.
    const text = isPinned ? "Default view (unpin)" : "Pin as default view";
    if (button.textContent !== text) button.textContent = text;
    button.setAttribute("aria-pressed", isPinned ? "true" : "false");
    button.disabled = !here && !pinned;
    button.title = here ? "Open Runs on this view from now on" : "Filter the list first, then pin it";
  }

  function togglePin() {
    const here = viewQuery(location.search);
    const isPinned = pinnedView() === here && here;
    if (isPinned || !here) {
      document.cookie = `${PIN}=; Path=/; Max-Age=0; SameSite=Lax`;
      announce("Runs opens on every run again.");
    } else {
      document.cookie = `${PIN}=${encodeURIComponent(here)}; Path=/; Max-Age=31536000; SameSite=Lax`;
      announce("Runs now opens on this view. Clear the filters to see every run.");
    }
    syncPin();
  }

  function readSkew() {
    const meta = document.querySelector('meta[name="server-time"]');
    const at = meta && Date.parse(meta.content);
    if (at) skew = at - Date.now();
  }

  // -- requests ------------------------------------------------------------------------

  // Cookie sessions need their CSRF token on every state-changing request.
  document.addEventListener("htmx:config:request", (event) => {
    const token = document.querySelector('meta[name="csrf-token"]')?.content;
    if (token) event.detail.ctx.request.headers["X-CSRF-Token"] = token;
  });

  // htmx drops the answer to a request whose row was redrawn meanwhile. So while a
  // restart or cancel is in flight, the live stream's next message waits for it: the
  // answer lands first, then the stream's newer state of the same rows.
  const inflight = new Set();
  let drained = null;
  function finished(ctx) {
    if (!inflight.delete(ctx) || inflight.size) return;
    drained?.resolve();
    drained = null;
  }
  document.addEventListener("htmx:before:request", (event) => {
    const source = event.target;
    if (!(source instanceof Element) || !source.closest("#runs-body")) return;
    const ctx = event.detail.ctx;
    inflight.add(ctx);
    // The end is told on the source, or on the document once the source is gone.
    source.addEventListener("htmx:finally:request", () => finished(ctx), { once: true });
    setTimeout(() => finished(ctx), 15000);
  });
  document.addEventListener("htmx:finally:request", (event) => finished(event.detail?.ctx));
  document.addEventListener("htmx:sse:before:message", (event) => {
    if (!inflight.size) return;
    if (!drained) {
      let resolve;
      const promise = new Promise((r) => (resolve = r));
      drained = { promise, resolve };
    }
    event.detail.waitUntil(drained.promise);
  });

  // -- messages ------------------------------------------------------------------------

  // Every message can be dismissed; a refused search's goes when the filters are sent again.
  document.addEventListener("click", (event) => {
    const close = event.target instanceof Element && event.target.closest("#alerts [data-dismiss]");
    if (!close) return;
    const alert = close.closest(".alert");
    alert?.remove();
    if (alert?.dataset.alert === "invalid_search") document.querySelector('#filters input[name="q"]')?.focus();
  });
  const dropSearchAlerts = () =>
    document.querySelectorAll('#alerts [data-alert="invalid_search"]').forEach((el) => el.remove());
  for (const type of ["submit", "change"]) {
    document.addEventListener(
      type,
      (event) => {
        if (event.target instanceof Element && event.target.closest("#filters")) dropSearchAlerts();
      },
      true,
    );
  }

  // Whether this page is following the runs: an operator who leaves a tab open must
  // see when it is not.
  function liveState(on) {
    const state = document.getElementById("live-state");
    if (!state) return;
    state.hidden = false;
    state.textContent = on ? "Live" : "Reconnecting…";
    state.classList.toggle("is-off", !on);
    document.documentElement.dataset.live = on ? "on" : "off";
  }
  document.addEventListener("htmx:sse:after:connection", () => liveState(true));
  document.addEventListener("htmx:sse:error", (event) => {
    liveState(false);
    // The session ended (signed out elsewhere, or idle too long): sign in again and
    // come back here, rather than retry forever.
    if (event.detail?.status === 401) {
      location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
    }
  });
  document.addEventListener("htmx:sse:close", (event) => {
    // A redrawn table closes its stream and opens the next: not an outage.
    if (event.detail?.reason !== "cleanup") liveState(false);
  });

  // A tab that was away too long is told to load its page again.
  document.addEventListener("htmx:after:history:push", syncPin);
  document.addEventListener("htmx:after:history:replace", syncPin);

  document.addEventListener("reload", () => {
    if (document.getElementById("runs-table")) {
      htmx.ajax("GET", location.pathname + location.search, { target: "#runs-table", swap: "outerHTML" });
    } else {
      location.reload();
    }
  });

  function showNew() {
    const button = document.querySelector("[data-show-new]");
    if (!button) return false;
    button.click();
    return true;
  }

  function back() {
    const list = document.querySelector("a[data-back]");
    let from = null;
    try {
      from = document.referrer ? new URL(document.referrer) : null;
    } catch {
      from = null;
    }
    // Back to the list as the operator left it (filters, page), when they came from it.
    if (from && from.origin === location.origin && from.pathname === "/workflows" && history.length > 1) {
      history.back();
    } else if (list) {
      location.assign(list.href);
    }
  }

  // -- keys ----------------------------------------------------------------------------

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const help = document.getElementById("help");
    if (help && help.open) return; // the dialog handles Esc itself
    const bulk = bulkOpen();
    if (bulk && !isTyping(event.target)) {
      if (event.key === "y") {
        const yes = bulk.querySelector("[data-bulk-confirm]");
        if (yes) {
          event.preventDefault();
          yes.click();
          return;
        }
      } else if (event.key === "Escape" || event.key === "n") {
        event.preventDefault();
        closeBulk();
        return;
      }
    }
    if (pending) {
      if (event.key === "y" || (event.key === "Enter" && !event.target.closest?.(".confirm button:not(.btn-primary)"))) {
        event.preventDefault();
        confirmPending();
      } else if (event.key === "Escape" || event.key === "n") {
        event.preventDefault();
        closeConfirm(true);
        announce("Not done.");
      }
      return;
    }
    if (isTyping(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const onControl = event.target instanceof Element && event.target.closest("a, button, summary");
    const detail = document.getElementById("run-detail");
    switch (event.key) {
      case "j":
      case "ArrowDown":
        if (!rows().length) return;
        event.preventDefault();
        move(1);
        break;
      case "k":
      case "ArrowUp":
        if (!rows().length) return;
        event.preventDefault();
        move(-1);
        break;
      case "Enter":
      case "o": {
        if (event.key === "Enter" && onControl) return;
        const link = selectedRow()?.querySelector("a[data-open]");
        if (link) {
          event.preventDefault();
          link.click();
        }
        break;
      }
      case "r":
      case "c": {
        const action = event.key === "r" ? "restart" : "cancel";
        if (detail) {
          event.preventDefault();
          const button = document.querySelector(`#run-actions button[data-action="${action}"]`);
          if (button) askConfirm(button.form);
          else cannot(action, detail.dataset.runId, document.getElementById("run-status")?.dataset.status);
          break;
        }
        const row = selectedRow();
        if (!row) return;
        event.preventDefault();
        const button = row.querySelector(`button[data-action="${action}"]`);
        if (button) askConfirm(button.form);
        else cannot(action, row.dataset.runId, row.dataset.status);
        break;
      }
      case "R":
      case "e": {
        // Resume from the failed node, or edit the inputs and restart.
        const action = event.key === "R" ? "resume" : "edit";
        const scope = detail ? document.getElementById("run-actions") : selectedRow();
        if (!scope) return;
        event.preventDefault();
        const control = scope.querySelector(`[data-action="${action}"]`);
        if (!control) {
          const id = detail ? detail.dataset.runId : scope.dataset.runId;
          const status = detail ? document.getElementById("run-status")?.dataset.status : scope.dataset.status;
          let why;
          if (document.body.dataset.operate !== "yes") why = "You can only read: that needs an operator.";
          else if (status === "pending" || status === "running") why = `Run ${short(id)} is ${status}: wait until it has ended.`;
          else if (action === "resume") why = `Run ${short(id)} cannot be resumed: only a failed or cancelled run that completed a node can. Restart it with r.`;
          else why = `Run ${short(id)} is being restarted already.`;
          announce(why, true);
        } else if (action === "edit") control.click();
        else askConfirm(control.form);
        break;
      }
      case "i": {
        const id = detail ? detail.dataset.runId : selectedRow()?.dataset.runId;
        if (!id && !rows().length) return;
        event.preventDefault();
        if (id) copyId(id);
        else announce("Select a run first (j or k), then press i to copy its id.", true);
        break;
      }
      case "x":
        if (togglePick(selectedRow())) event.preventDefault();
        break;
      case "X":
        if (extendPick(selectedRow())) event.preventDefault();
        break;
      case "J":
      case "K":
        if (!rows().length) return;
        event.preventDefault();
        if (!anchorId && selectedRow()) anchorId = selectedId;
        move(event.key === "J" ? 1 : -1);
        extendPick(selectedRow());
        break;
      case "t": {
        const since = document.querySelector('#filters select[name="since"]');
        if (since) {
          event.preventDefault();
          since.focus();
        }
        break;
      }
      case ".":
        if (showNew()) event.preventDefault();
        break;
      case "z":
        event.preventDefault();
        toggleZone();
        break;
      case "u":
      case "Backspace":
        if (detail) {
          event.preventDefault();
          back();
        }
        break;
      case "/": {
        const box = document.querySelector('#filters input[name="q"]');
        if (box) {
          event.preventDefault();
          box.focus();
          box.select();
        }
        break;
      }
      case "n":
      case "p": {
        const link = document.querySelector(`a[data-page="${event.key === "n" ? "next" : "prev"}"]`);
        if (link) {
          event.preventDefault();
          link.click();
        }
        break;
      }
      case "?":
        if (help) {
          event.preventDefault();
          help.showModal();
        }
        break;
    }
  });

  // Every click on Restart or Cancel asks first, in the same place the keyboard does.
  document.addEventListener(
    "submit",
    (event) => {
      const form = event.target;
      if (!(form instanceof HTMLFormElement) || !form.querySelector("[data-action]")) return;
      if (form.dataset.confirmed === "1") {
        delete form.dataset.confirmed;
        return;
      }
      event.preventDefault();
      event.stopImmediatePropagation();
      const row = form.closest("tr.run");
      if (row) select(row, false);
      askConfirm(form);
    },
    true,
  );

  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    const copy = target?.closest("[data-copy-id]");
    if (copy) {
      const row = copy.closest("#runs-body tr.run");
      if (row) select(row, false);
      copyId(copy.dataset.copyId);
      return;
    }
    const box = target?.closest("input[data-pick]");
    if (box) {
      const row = box.closest("tr.run");
      if (event.shiftKey) {
        box.checked = !box.checked; // the range decides, not the click
        extendPick(row);
      } else {
        box.checked = !box.checked;
        togglePick(row);
      }
      return;
    }
    if (target?.closest("[data-bulk-every]")) {
      everyMatching = true;
      matched = null;
      renderBulk();
      announce("Every run matching these filters is selected, on all pages.");
      countMatching();
      return;
    }
    if (target?.closest("[data-bulk-clear]")) {
      clearPicks(false);
      return;
    }
    if (target?.closest("[data-bulk-back]")) {
      closeBulk();
      return;
    }
    if (target?.closest("[data-help-open]")) document.getElementById("help")?.showModal();
    if (target?.closest("#zone-toggle")) toggleZone();
    if (target?.closest("#pin-view")) togglePin();
    const row = target?.closest("#runs-body tr.run");
    if (row && !target.closest("a, button, form, .confirm")) select(row, true);
  });

  document.addEventListener("focusin", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    // Focus moved away from an open confirmation: a redraw leaves it where it went.
    if (pending && target && !pending.bar.contains(target)) pending.focused = null;
    const row = target?.closest("#runs-body tr.run");
    rowHadFocus = Boolean(row) && target === row;
    if (row && row.dataset.runId !== selectedId) select(row, false);
    const button = target?.closest("button[data-action]");
    const host = button?.closest("[id]");
    focusKey = button && host ? { host: host.id, action: button.dataset.action } : null;
  });

  // After paging or filtering, the table is new: land on its first row and say where.
  function tableChanged(table) {
    const label = table.dataset.pageLabel;
    if (label) announce(label + ".");
    const first = table.querySelector("#runs-body tr.run");
    if (first && table.dataset.focusFirst !== "no") select(first, true);
  }

  // Redraws (stream, restart, paging) replace nodes: put selection, focus and an open
  // confirmation back on the equivalent new nodes.
  new MutationObserver((records) => {
    for (const record of records) for (const node of record.addedNodes) expandRows(node);
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (!(node instanceof Element)) continue;
        if (node.id === "runs-table" && !document.activeElement?.closest?.("#filters")) tableChanged(node);
        else if (node.id === "runs-table") announce((node.dataset.pageLabel || "") + ".");
        // Other filters: "every run matching" meant the old ones.
        if (node.id === "runs-table" && everyMatching && document.activeElement?.closest?.("#filters")) {
          everyMatching = false;
          renderBulk();
        }
        if (node.matches("[data-bulk-open]") || node.querySelector?.("[data-bulk-open]")) {
          const open = node.matches("[data-bulk-open]") ? node : node.querySelector("[data-bulk-open]");
          const question = open.querySelector("p")?.textContent.replace(/\s+/g, " ").trim() || "";
          (open.querySelector("[data-bulk-confirm]") || open.querySelector("[data-bulk-back]"))?.focus({ preventScroll: true });
          announce(question + (open.querySelector("[data-bulk-confirm]") ? " Press y to confirm, Escape to back out." : ""));
        }
        if (node.matches?.("[data-batch]") && bulkConfirm()?.contains(node) && (picked.size || everyMatching)) {
          picked.clear();
          everyMatching = false;
          renderBulk();
          announce(node.textContent.replace(/\s+/g, " ").trim());
        }
        // The restart answer names the new run: follow it to tell how it ends.
        const marks = node.matches("[data-acted-run]") ? [node] : node.querySelectorAll("[data-acted-run]");
        for (const mark of marks) remember(mark.dataset.actedRun, "restart");
        reportOutcomes(node.parentElement || node);
      }
    }
    keepConfirmation();
    if (picked.size || everyMatching) syncBoxes();
    const active = document.activeElement;
    const lost = active === document.body || active === null;
    if (selectedId) {
      const row = rowById(selectedId);
      if (row) {
        if (!row.classList.contains("selected")) row.classList.add("selected");
        if (rowHadFocus && !pending && lost) row.focus({ preventScroll: true });
      }
    }
    if (lost && !pending && focusKey) {
      const button = document.getElementById(focusKey.host)?.querySelector(`button[data-action="${focusKey.action}"]`);
      button?.focus({ preventScroll: true });
    }
    tick();
    zoneTimes(document);
    syncPin();
  }).observe(document.body, { childList: true, subtree: true });

  document.addEventListener("DOMContentLoaded", () => {
    expandRows(document);
    readSkew();
    tick();
    zoneTimes(document);
    syncPin();
    setInterval(tick, 1000);
    const detail = document.getElementById("run-detail");
    let origin = null;
    try {
      origin = sessionStorage.getItem(ACTED + "-next");
    } catch {
      origin = null;
    }
    if (origin !== null) {
      store(ACTED + "-next", null);
      // Only the run that restart created: a refused restart lands elsewhere.
      if (detail && detail.dataset.restartedFrom === origin) remember(detail.dataset.runId, "restart");
    }
    reportOutcomes(document);
    const heading = document.querySelector("#run-detail h1");
    if (heading) heading.focus({ preventScroll: true });
  });
})();
