// Keyboard operation of the run list, the shortcut help, and inline confirmation.
// Rows are replaced by htmx (polling, restart); the selection is kept by run id.
(function () {
  "use strict";

  let selectedId = null;
  let rowHadFocus = false;
  let pending = null; // {row, form, bar} while a confirmation is open

  const live = () => document.getElementById("live");
  const rows = () => Array.from(document.querySelectorAll("#runs-body tr.run"));
  const rowById = (id) => document.getElementById("run-" + id);

  function announce(text) {
    const region = live();
    if (region) region.textContent = text;
  }

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

  function closeConfirm(restoreFocus) {
    if (!pending) return;
    pending.bar.remove();
    pending.form.hidden = false;
    const row = pending.row;
    pending = null;
    if (restoreFocus && row.isConnected) row.focus({ preventScroll: true });
  }

  function askConfirm(row, form) {
    closeConfirm(false);
    const verb = form.querySelector('[data-action="cancel"]') ? "Cancel" : "Restart";
    const question = `${verb} run ${row.dataset.runId.slice(0, 8)}?`;
    const bar = document.createElement("span");
    bar.className = "confirm";
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", question);
    const text = document.createElement("span");
    text.textContent = question;
    const yes = document.createElement("button");
    yes.type = "button";
    yes.className = "btn";
    yes.textContent = "Yes (y)";
    const no = document.createElement("button");
    no.type = "button";
    no.className = "btn";
    no.textContent = "No (Esc)";
    bar.append(text, yes, no);
    form.hidden = true;
    form.after(bar);
    pending = { row, form, bar };
    yes.addEventListener("click", () => confirmPending());
    no.addEventListener("click", () => closeConfirm(true));
    announce(question + " Press y or Enter to confirm, Escape to back out.");
    yes.focus({ preventScroll: true });
  }

  function confirmPending() {
    if (!pending) return;
    const { form, row } = pending;
    closeConfirm(false);
    row.focus({ preventScroll: true });
    form.dataset.confirmed = "1";
    form.requestSubmit();
  }

  function isTyping(target) {
    if (!(target instanceof Element)) return false;
    return target.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName);
  }

  // Cookie sessions need their CSRF token on every state-changing request.
  document.addEventListener("htmx:config:request", (event) => {
    const token = document.querySelector('meta[name="csrf-token"]')?.content;
    if (token) event.detail.ctx.request.headers["X-CSRF-Token"] = token;
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const help = document.getElementById("help");
    if (help && help.open) return; // the dialog handles Esc itself
    if (pending) {
      if (event.key === "y" || event.key === "Enter") {
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
    const onControl = event.target instanceof Element && event.target.closest("a, button");
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
        const row = selectedRow();
        if (!row) return;
        const action = event.key === "r" ? "restart" : "cancel";
        const button = row.querySelector(`button[data-action="${action}"]`);
        event.preventDefault();
        if (button) askConfirm(row, button.form);
        else announce(`Run ${row.dataset.runId.slice(0, 8)} cannot be ${action === "restart" ? "restarted" : "cancelled"} now.`);
        break;
      }
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

  // A mouse click on Cancel asks first, like the keyboard does; Restart is safe to do at once.
  document.addEventListener(
    "submit",
    (event) => {
      const form = event.target;
      if (!(form instanceof HTMLFormElement) || !form.querySelector("[data-action]")) return;
      if (form.dataset.confirmed === "1") {
        delete form.dataset.confirmed;
        return;
      }
      if (!form.querySelector('[data-action="cancel"]')) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      const row = form.closest("tr.run");
      if (row) {
        select(row, false);
        askConfirm(row, form);
      }
    },
    true,
  );

  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (target?.closest("[data-help-open]")) document.getElementById("help")?.showModal();
    const row = target?.closest("#runs-body tr.run");
    if (row && !target.closest("a, button, form")) select(row, true);
  });

  document.addEventListener("focusin", (event) => {
    const row = event.target instanceof Element ? event.target.closest("#runs-body tr.run") : null;
    rowHadFocus = Boolean(row);
    if (row && row.dataset.runId !== selectedId) select(row, false);
  });

  // Rows are swapped in place by polling and by restart: put the selection (and the
  // focus, if the row had it) back on the row with the same run id.
  new MutationObserver(() => {
    if (!selectedId) return;
    const row = rowById(selectedId);
    if (!row) return;
    if (!row.classList.contains("selected")) row.classList.add("selected");
    const active = document.activeElement;
    if (rowHadFocus && !pending && (active === document.body || active === null)) {
      row.focus({ preventScroll: true });
    }
  }).observe(document.body, { childList: true, subtree: true });
})();
