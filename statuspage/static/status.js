// Optional: the page works without it (links for tabs, a meta refresh). With it, tabs and the
// periodic refresh replace the page's content in place, and times show in the viewer's zone.
"use strict";
(function () {
  const app = document.getElementById("app");
  if (!app || !window.fetch) return;
  const seconds = Number(document.body.dataset.refresh) || 300;
  // The head's links are relative to the first URL; pin them before the path changes.
  for (const link of document.querySelectorAll("head link[href]")) link.href = link.href;
  const format = new Intl.DateTimeFormat(undefined, {
    weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", timeZoneName: "short",
  });

  function localTimes(root) {
    for (const el of root.querySelectorAll("time[datetime]")) {
      const when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) el.textContent = format.format(when);
    }
  }

  async function load(url, push) {
    const target = new URL(url, location.href);
    const fragment = new URL(target);
    fragment.searchParams.set("fragment", "1");
    try {
      const response = await fetch(fragment, { headers: { Accept: "text/html" }, credentials: "same-origin" });
      if (!response.ok) return false;
      const html = await response.text();
      app.innerHTML = html;
      localTimes(app);
      const title = app.querySelector("nav.tabs a[aria-current=page]");
      const name = document.querySelector("header.top h1");
      if (title && name) document.title = (title.dataset.tab === "overview" ? "" : title.textContent.trim() + " — ") + name.textContent;
      if (push) history.pushState({}, "", target.pathname);
      return true;
    } catch (_error) {
      return false;  // offline or the server restarting: the next refresh tries again
    }
  }

  app.addEventListener("click", function (event) {
    const link = event.target.closest("nav.tabs a, .system-card h3 a");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    load(link.href, true);
  });
  window.addEventListener("popstate", function () { load(location.href, false); });
  setInterval(function () { if (!document.hidden) load(location.href, false); }, seconds * 1000);
  localTimes(app);
})();
