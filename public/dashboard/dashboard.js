// Butler dashboard: progressive enhancement only. Pages work without this script; with it,
// decisions happen in place and lists update live over Server-Sent Events. No inline script is
// needed (the Content-Security-Policy forbids it), and server-rendered HTML is already escaped.

(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.getAttribute("content") ?? "";

  /** Times are rendered in UTC; show them in the viewer's zone, with UTC on hover. */
  function localizeTimes(root) {
    for (const t of root.querySelectorAll("time[datetime]")) {
      const d = new Date(t.getAttribute("datetime"));
      if (!Number.isNaN(d.getTime())) t.textContent = d.toLocaleString();
    }
  }

  async function post(form) {
    const res = await fetch(form.action, {
      method: "POST",
      headers: {
        accept: "application/json",
        "content-type": "application/x-www-form-urlencoded",
        "x-csrf-token": csrf,
      },
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin",
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
    return body;
  }

  function showError(el, message) {
    let p = el.querySelector(".error");
    if (!p) {
      p = document.createElement("p");
      p.className = "error";
      p.setAttribute("role", "alert");
      el.appendChild(p);
    }
    p.textContent = message;
  }

  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.action) return;
    ev.preventDefault();
    const buttons = form.closest("article, tr")?.querySelectorAll("button") ?? [];
    for (const b of buttons) b.disabled = true;
    try {
      const body = await post(form);
      if (form.dataset.action === "revoke") {
        const row = form.closest("tr");
        if (row) {
          row.dataset.state = "revoked";
          form.replaceWith(document.createTextNode("revoked"));
        }
        return;
      }
      const card = form.closest("article.request");
      if (card && typeof body.html === "string") {
        card.outerHTML = body.html;
        const fresh = document.getElementById(card.id);
        if (fresh) {
          localizeTimes(fresh);
          fresh.querySelector(".outcome")?.setAttribute("tabindex", "-1");
          fresh.querySelector(".outcome")?.focus();
        }
      }
    } catch (e) {
      for (const b of buttons) b.disabled = false;
      showError(form.closest("article, td") ?? form, e.message);
    }
  });

  function live(query, onEvent) {
    const source = new EventSource(`/dashboard/events${query}`);
    source.addEventListener("audit", (m) => {
      try {
        onEvent(JSON.parse(m.data));
      } catch {
        /* a malformed event is skipped */
      }
    });
    return source;
  }

  const requests = document.querySelector('[data-live="requests"]');
  if (requests) {
    let pending;
    const refresh = () => {
      clearTimeout(pending);
      pending = setTimeout(async () => {
        const res = await fetch("/dashboard/fragments/requests", { credentials: "same-origin" });
        if (!res.ok) return;
        requests.innerHTML = await res.text();
        localizeTimes(requests);
        requests.dataset.refreshed = String(Date.now());
      }, 50);
    };
    live("", (e) => {
      if (/^(access_request|grant|one_shot|policy)\./.test(e.type)) refresh();
    });
  }

  const timeline = document.querySelector('[data-live="timeline"]');
  if (timeline) {
    const q = new URLSearchParams();
    q.set("after", timeline.dataset.after ?? "0");
    if (timeline.dataset.agent) q.set("agent", timeline.dataset.agent);
    if (timeline.dataset.project) q.set("project", timeline.dataset.project);
    live(`?${q}`, (e) => {
      if (timeline.querySelector(`li[data-seq="${Number(e.seq)}"]`)) return;
      timeline.insertAdjacentHTML("beforeend", e.html);
      localizeTimes(timeline.lastElementChild);
    });
  }

  localizeTimes(document);
})();
