// The preview page: draws /api/state, reloads the email when /events says it was rebuilt.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const body = document.body;
  let issue = body.dataset.issue;
  let shownVersion = -1;
  let appearance = "light";
  let width = 600;

  function setStatus(text, isError) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", !!isError);
  }

  function drawProblem(problem) {
    const panel = $("problem");
    if (!problem) { panel.hidden = true; body.dataset.problem = ""; return; }
    panel.hidden = false;
    body.dataset.problem = problem.kind;
    const titles = {
      template: "A template did not render",
      config: "config.yaml cannot be used",
      empty: "This issue has nothing to send",
      content: "The content cannot be used",
    };
    $("problem-title").textContent = titles[problem.kind] || "The last change did not build";
    $("problem-where").textContent = problem.path ? problem.path + (problem.line ? ":" + problem.line : "") : "";
    $("problem-message").textContent = problem.message;
    const details = $("problem-details");
    details.replaceChildren(...problem.details.map((d) => { const li = document.createElement("li"); li.textContent = d; return li; }));
    const snippet = $("problem-snippet");
    snippet.replaceChildren(...problem.snippet.map((s) => {
      const span = document.createElement("span");
      span.textContent = String(s.line).padStart(4) + "  " + s.text + "\n";
      if (s.line === problem.line) span.className = "hit";
      return span;
    }));
    snippet.hidden = problem.snippet.length === 0;
  }

  function drawWeeks(weeks) {
    const picker = $("week-picker");
    const choices = weeks.slice();
    if (!choices.some((w) => w.issue_id === issue && !w.archived)) choices.unshift({ issue_id: issue, label: issue, archived: false });
    picker.replaceChildren(...choices.map((w) => {
      const option = document.createElement("option");
      option.value = (w.archived ? "archive:" : "") + w.issue_id;
      option.textContent = w.archived ? "Archive · " + w.label : w.label;
      option.selected = !w.archived && w.issue_id === issue;
      return option;
    }));
  }

  function drawEmail(email) {
    $("inbox-from").textContent = email.from;
    $("inbox-subject").textContent = email.subject;
    $("inbox-preheader").textContent = "— " + email.preheader;
    $("text-part").textContent = email.text;
    $("headers").textContent = Object.entries(email.headers).map(([k, v]) => k + ": " + v).join("\n");
    const checks = $("checks");
    checks.replaceChildren(...email.checks.map((c) => {
      const li = document.createElement("li");
      li.className = c.status;
      li.dataset.check = c.name;
      li.textContent = c.name + (c.message ? ": " + c.message : "");
      return li;
    }));
    const trimmed = email.trimmed.length ? " · trimmed: " + email.trimmed.join(", ") : "";
    $("summary").textContent = email.post_count + " posts in " + email.sections.length + " sections" + trimmed;
    $("email-size").textContent = (email.html_bytes / 1024).toFixed(1) + " KB of HTML";
    loadEmail(email.url, email.version);
  }

  // Reload the frame, keeping the reader's scroll position and the chosen appearance.
  function loadEmail(url, version) {
    if (version === shownVersion) return;
    const frame = $("email");
    const doc = frame.contentDocument;
    const scroll = doc && doc.scrollingElement ? doc.scrollingElement.scrollTop : 0;
    frame.onload = () => {
      applyAppearance();
      fitHeight();
      const d = frame.contentDocument;
      if (d && d.scrollingElement) d.scrollingElement.scrollTop = scroll;
      body.dataset.version = String(version);
    };
    frame.src = url;
    shownVersion = version;
  }

  async function refresh() {
    const response = await fetch("/api/state?week=" + encodeURIComponent(issue), { cache: "no-store" });
    if (!response.ok) { setStatus("the preview server answered " + response.status, true); return; }
    const state = await response.json();
    drawWeeks(state.weeks || []);
    drawProblem(state.problem);
    if (state.email) drawEmail(state.email);
    if (state.problem) setStatus("build failed · showing the last good email", true);
    else setStatus("built in " + state.build_ms + " ms · " + new Date().toLocaleTimeString());
  }

  function fitHeight() {
    const frame = $("email");
    const doc = frame.contentDocument;
    if (!doc || !doc.documentElement) return;
    // Shrink first: a document is never shorter than its frame, so measuring alone only grows.
    frame.style.height = "400px";
    frame.style.height = Math.max(400, doc.documentElement.scrollHeight) + "px";
  }

  function setWidth(px) {
    width = px;
    $("frame-wrap").style.width = px + "px";
    document.querySelectorAll("button.width").forEach((b) => b.setAttribute("aria-pressed", String(Number(b.dataset.width) === px)));
    requestAnimationFrame(fitHeight);
  }

  // Dark mode: "dark" turns on the email's own @media (prefers-color-scheme: dark) rules, as a
  // client that honours them would; "invert" recolours everything, as clients that force dark do.
  function applyAppearance() {
    const frame = $("email");
    const doc = frame.contentDocument;
    $("frame-wrap").classList.toggle("invert", appearance === "invert");
    if (!doc) return;
    const old = doc.getElementById("digest-preview-dark");
    if (old) old.remove();
    if (appearance !== "dark") return;
    const rules = [];
    for (const sheet of Array.from(doc.styleSheets)) {
      let list;
      try { list = sheet.cssRules; } catch (e) { continue; }
      for (const rule of Array.from(list)) {
        if (rule.media && /prefers-color-scheme:\s*dark/.test(rule.media.mediaText)) {
          for (const inner of Array.from(rule.cssRules)) rules.push(inner.cssText);
        }
      }
    }
    const style = doc.createElement("style");
    style.id = "digest-preview-dark";
    style.textContent = ":root { color-scheme: dark; }\n" + rules.join("\n");
    (doc.head || doc.documentElement).appendChild(style);
  }

  function showTab(name) {
    document.querySelectorAll("[role=tab]").forEach((t) => t.setAttribute("aria-selected", String(t.dataset.tab === name)));
    document.querySelectorAll("[role=tabpanel]").forEach((p) => { p.hidden = p.id !== "panel-" + name; });
  }

  function connect() {
    const source = new EventSource("/events");
    source.addEventListener("build", (message) => {
      const event = JSON.parse(message.data);
      if (event.issue_id !== issue) return;
      // A good build: start loading the new email at once, while the panels refresh.
      if (event.ok) loadEmail("/email/" + encodeURIComponent(issue) + ".html?v=" + event.version, event.version);
      refresh();
    });
    source.onopen = () => { body.dataset.live = "1"; };
    source.onerror = () => { body.dataset.live = ""; setStatus("reconnecting to the preview server…", true); };
  }

  document.querySelectorAll("button.width").forEach((b) => b.addEventListener("click", () => setWidth(Number(b.dataset.width))));
  document.querySelectorAll("[role=tab]").forEach((t) => t.addEventListener("click", () => showTab(t.dataset.tab)));
  $("appearance").addEventListener("change", (e) => { appearance = e.target.value; applyAppearance(); });
  $("week-picker").addEventListener("change", (e) => {
    const value = e.target.value;
    if (value.startsWith("archive:")) { window.open("/archive/" + value.slice(8) + "/", "_blank"); drawWeeks([]); refresh(); return; }
    issue = value;
    shownVersion = -1;
    history.replaceState(null, "", "/?week=" + encodeURIComponent(issue));
    document.title = "Preview · " + issue;
    refresh();
  });
  const form = $("send-test");
  if (form) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      setStatus("sending a test…");
      const token = document.querySelector("meta[name=digest-preview-token]").content;
      const response = await fetch("/api/send-test", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Preview-Token": token },
        body: JSON.stringify({ to: $("send-to").value, week: issue }),
      });
      const result = await response.json();
      setStatus(result.ok ? result.message : "test not sent: " + result.error, !result.ok);
    });
  }
  window.addEventListener("resize", fitHeight);
  setWidth(width);
  refresh().then(connect);
})();
