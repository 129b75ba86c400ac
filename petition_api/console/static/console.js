// The dashboard's live figures: every few seconds, fetch the figures again (an HTML
// fragment the server renders, 304 when unchanged) and put them in place, keeping open
// tables open and the keyboard focus where it was. The map's shades come with them.
"use strict";

(function () {
  const box = document.getElementById("figures");
  if (!box) return;
  const status = document.getElementById("live-status");
  const url = box.dataset.live;
  const every = 5000;
  let tag = null;

  function say(template, time) {
    status.textContent = template.replace("{time}", time || "");
  }

  function shadeMap() {
    const data = document.getElementById("map-levels");
    const map = document.getElementById("world-map");
    if (!data || !map) return;
    const levels = JSON.parse(data.textContent || "{}");
    for (const group of map.querySelectorAll("g[data-code]")) {
      const shown = levels[group.dataset.code];
      group.setAttribute("class", "level-" + (shown ? shown[0] : 0));
      const title = group.querySelector("title");
      if (title) title.textContent = shown ? shown[1] : group.dataset.code;
    }
  }

  function replace(html) {
    const open = [...box.querySelectorAll("details[open]")].map((d) => d.id);
    const focused = box.contains(document.activeElement) ? document.activeElement.id : null;
    box.innerHTML = html;
    for (const id of open) {
      const details = document.getElementById(id);
      if (details) details.open = true;
    }
    if (focused) {
      const again = document.getElementById(focused);
      if (again) again.focus();
    }
    shadeMap();
  }

  async function poll() {
    const headers = { Accept: "text/html" };
    if (tag) headers["If-None-Match"] = tag;
    try {
      const response = await fetch(url, { headers, credentials: "same-origin", cache: "no-store" });
      if (response.redirected || response.status === 401) {
        say(status.dataset.ended); // sent to the sign-in page: the session has ended
        return;
      }
      if (response.status === 200) {
        tag = response.headers.get("ETag");
        replace(await response.text());
      } else if (response.status !== 304) {
        throw new Error(String(response.status));
      }
      say(status.dataset.checked, new Date().toLocaleTimeString());
    } catch (error) {
      say(status.dataset.failed);
    }
    window.setTimeout(poll, every);
  }

  window.setTimeout(poll, every);
})();
